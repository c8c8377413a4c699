"""Onboarding's data: the wizard's telemetry events."""

from __future__ import annotations

import calendar
import uuid
from datetime import datetime, timedelta

from django.conf import settings
from django.db import models

from voxanne.models import Organization
from voxanne.tenancy import TenantQuerySet


class EventName(models.TextChoices):
    # The first wizard's six.
    STARTED = "started"
    CLINIC_NAMED = "clinic_named"
    SPECIALTY_CHOSEN = "specialty_chosen"
    PAYMENT_VIEWED = "payment_viewed"
    PAYMENT_SUCCESS = "payment_success"
    TEST_CALL_COMPLETED = "test_call_completed"
    # The second wizard's.
    DIRECTION_CHOSEN = "direction_chosen"
    NUMBER_SEARCHED = "number_searched"
    NUMBER_SELECTED = "number_selected"
    NUMBER_PROVISIONED = "number_provisioned"
    TELECOM_ROUTING_VIEWED = "telecom_routing_viewed"
    FORWARDING_CODE_COPIED = "forwarding_code_copied"
    CALLER_ID_VERIFIED = "caller_id_verified"
    TELECOM_ROUTING_SKIPPED = "telecom_routing_skipped"
    AGENT_PERSONA_SELECTED = "agent_persona_selected"
    AGENT_VOICE_SELECTED = "agent_voice_selected"
    AGENT_CONFIGURED = "agent_configured"
    AGENT_SYNCING = "agent_syncing"
    AGENT_SYNC_COMPLETE = "agent_sync_complete"
    ONBOARDING_COMPLETE = "onboarding_complete"
    TEST_CALL_INITIATED = "test_call_initiated"


class OnboardingEvent(models.Model):
    """One telemetry event from the wizard. Append-only (no updated_at: never updated)."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    org = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="onboarding_events"
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    event_name = models.CharField(max_length=64, choices=EventName.choices)
    step_index = models.PositiveSmallIntegerField()
    metadata = models.JSONField(default=dict, blank=True)
    session_id = models.CharField(max_length=100, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=False)

    objects = TenantQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            # The abandonment job: "orgs with event X, earliest at", and the admin's per-org list.
            models.Index(
                fields=["event_name", "org", "created_at"], name="event_name_org_time_idx"
            ),
            models.Index(fields=["org", "-created_at"], name="event_org_time_idx"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(step_index__lte=4), name="event_step_index_0_to_4"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.event_name} (step {self.step_index})"


# --- Paid phone-number provisioning --------------------------------------------------------
# Only onboarding/provisioning.py writes these tables.


def _fernet():
    from cryptography.fernet import Fernet

    return Fernet(settings.FIELD_ENCRYPTION_KEY.encode())


class TwilioSubaccount(models.Model):
    """The org's Twilio subaccount, created once. The auth token is stored encrypted."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    org = models.OneToOneField(
        Organization, on_delete=models.PROTECT, related_name="twilio_subaccount"
    )
    account_sid = models.CharField(max_length=64, unique=True)
    friendly_name = models.CharField(max_length=64)
    auth_token_encrypted = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = TenantQuerySet.as_manager()

    def __str__(self) -> str:
        return self.account_sid

    def __repr__(self) -> str:
        return f"<TwilioSubaccount {self.account_sid}>"

    @staticmethod
    def encrypt(token: str) -> str:
        return _fernet().encrypt(token.encode()).decode()

    @property
    def auth_token(self) -> str:
        return _fernet().decrypt(self.auth_token_encrypted.encode()).decode()


class AttemptState(models.TextChoices):
    IN_PROGRESS = "in_progress", "In progress"
    COMPENSATING = "compensating", "Undoing"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed (refunded)"


ACTIVE_ATTEMPT_STATES = (AttemptState.IN_PROGRESS, AttemptState.COMPENSATING)


class ProvisioningAttempt(models.Model):
    """One paid try at getting an org its number, from the hold to its end.

    Each provider step's result is written as soon as it is known, so whoever picks the attempt
    up after a crash (the reconciler) can finish it or undo exactly what was done.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    org = models.ForeignKey(
        Organization, on_delete=models.PROTECT, related_name="provisioning_attempts"
    )
    state = models.CharField(
        max_length=16, choices=AttemptState.choices, default=AttemptState.IN_PROGRESS
    )
    idempotency_key = models.CharField(max_length=255)
    request_fingerprint = models.CharField(max_length=64)
    area_code = models.CharField(max_length=3, blank=True)
    hold = models.OneToOneField(
        "billing.LedgerEntry", on_delete=models.PROTECT, related_name="provisioning_attempt"
    )
    # Whoever drives the attempt holds the lease; the reconciler takes over only after it lapses.
    lease_token = models.UUIDField(null=True, blank=True)
    lease_expires_at = models.DateTimeField()
    # Provider results, written the moment each step returns.
    subaccount_sid = models.CharField(max_length=64, blank=True)
    twilio_number_sid = models.CharField(max_length=64, blank=True)
    phone_number = models.CharField(max_length=20, blank=True)
    vapi_phone_id = models.CharField(max_length=100, blank=True)
    subaccount_at = models.DateTimeField(null=True, blank=True)
    purchased_at = models.DateTimeField(null=True, blank=True)
    imported_at = models.DateTimeField(null=True, blank=True)
    refunded_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    reconciled_at = models.DateTimeField(null=True, blank=True)
    error_code = models.CharField(max_length=64, blank=True)
    error_detail = models.TextField(blank=True)  # the provider's text, for support only
    # The first response for this idempotency key, replayed to a retry with the same key.
    response_status = models.PositiveSmallIntegerField(null=True, blank=True)
    response_body = models.JSONField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = TenantQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["org"],
                condition=models.Q(state__in=["in_progress", "compensating"]),
                name="one_active_provisioning_attempt_per_org",
            ),
            models.UniqueConstraint(
                fields=["org", "idempotency_key"], name="provisioning_key_unique_per_org"
            ),
            models.CheckConstraint(
                condition=models.Q(state__in=["in_progress", "compensating"])
                | models.Q(finished_at__isnull=False),
                name="provisioning_finished_attempt_has_finish_time",
            ),
        ]
        indexes = [
            models.Index(
                fields=["lease_expires_at"],
                name="provisioning_active_lease_idx",
                condition=models.Q(state__in=["in_progress", "compensating"]),
            ),
        ]

    def __str__(self) -> str:
        return f"Provisioning {str(self.id)[:8]} ({self.get_state_display()})"

    @property
    def number_friendly_name(self) -> str:
        """The purchased number's Twilio FriendlyName: finds it again after a crash."""
        return f"voxanne-attempt-{self.id.hex}"


class ManagedPhoneNumber(models.Model):
    """A phone number the org paid for: bought on its subaccount and imported into Vapi."""

    class Status(models.TextChoices):
        ACTIVE = "active", "Active"
        RELEASED = "released", "Released"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    org = models.ForeignKey(
        Organization, on_delete=models.PROTECT, related_name="managed_phone_numbers"
    )
    attempt = models.OneToOneField(
        ProvisioningAttempt, on_delete=models.PROTECT, related_name="managed_number"
    )
    phone_number = models.CharField(max_length=20)
    twilio_number_sid = models.CharField(max_length=64, unique=True)
    subaccount_sid = models.CharField(max_length=64)
    # Indexed: every inbound call is routed by it (the assistant-request webhook).
    vapi_phone_id = models.CharField(max_length=100, db_index=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ACTIVE)
    # The monthly rental (onboarding/rental.py writes these). Month n ends on the n-th monthly
    # anniversary of rental_started_at; the provisioning charge paid month 1.
    rental_started_at = models.DateTimeField()
    months_paid = models.PositiveIntegerField(default=1)
    paid_until = models.DateTimeField()
    # Set while the renewal due at paid_until is unpaid: the number is released at grace_until
    # (paid_until + NUMBER_GRACE_DAYS, later if support extended it).
    grace_until = models.DateTimeField(null=True, blank=True)
    grace_extended_reason = models.CharField(max_length=500, blank=True)
    # Released: the clinic no longer has it. provider_released_at: nothing is left at Vapi or
    # Twilio (until then the release is retried, each retry claimed with release_lease_until).
    released_at = models.DateTimeField(null=True, blank=True)
    provider_released_at = models.DateTimeField(null=True, blank=True)
    release_lease_until = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = TenantQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        permissions = [("extend_grace", "Can extend a phone number's grace period")]
        constraints = [
            models.UniqueConstraint(
                fields=["org"],
                condition=models.Q(status="active"),
                name="one_active_phone_number_per_org",
            ),
            models.CheckConstraint(
                condition=models.Q(phone_number__regex=r"^\+[1-9][0-9]{6,14}$"),
                name="managed_number_is_e164",
            ),
            models.CheckConstraint(
                condition=models.Q(status="active") | models.Q(released_at__isnull=False),
                name="managed_number_released_has_time",
            ),
            models.CheckConstraint(
                condition=models.Q(months_paid__gte=1), name="managed_number_months_paid_positive"
            ),
        ]
        indexes = [
            models.Index(
                fields=["paid_until"],
                name="managed_number_renewal_idx",
                condition=models.Q(status="active"),
            ),
            # A call whose Vapi number id we do not know is routed by the number itself.
            models.Index(
                fields=["phone_number"],
                name="managed_number_active_idx",
                condition=models.Q(status="active"),
            ),
            models.Index(
                fields=["released_at"],
                name="managed_number_unreleased_idx",
                condition=models.Q(status="released", provider_released_at__isnull=True),
            ),
        ]

    def __str__(self) -> str:
        return self.phone_number

    def month_end(self, month: int) -> datetime:
        """When the number's `month`-th month of rental ends (1 = the month provisioning paid)."""
        return add_months(self.rental_started_at, month)

    @property
    def rental_status(self) -> str:
        """What the clinic sees: active, grace (renewal unpaid) or released."""
        if self.status == self.Status.RELEASED:
            return "released"
        return "grace" if self.grace_until is not None else "active"


def add_months(moment: datetime, months: int) -> datetime:
    """The same day and time `months` later, on the month's last day when it is shorter
    (31 January + 1 month = 28 or 29 February)."""
    total = moment.month - 1 + months
    year, month = moment.year + total // 12, total % 12 + 1
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return moment.replace(year=year, month=month, day=day)


class NoticeKind(models.TextChoices):
    GRACE_DAY_0 = "grace_day_0", "Renewal failed (grace day 0)"
    GRACE_DAY_3 = "grace_day_3", "Grace reminder (day 3)"
    GRACE_DAY_6 = "grace_day_6", "Last day of grace (day 6)"
    RELEASED = "released", "Number released"


# Which grace email is due how many days after the unpaid renewal (paid_until).
GRACE_NOTICE_DAYS: dict[str, timedelta] = {
    NoticeKind.GRACE_DAY_6: timedelta(days=6),
    NoticeKind.GRACE_DAY_3: timedelta(days=3),
    NoticeKind.GRACE_DAY_0: timedelta(days=0),
}


class NumberNotice(models.Model):
    """One email about a number's rental: claimed (a row) before it is sent, so overlapping
    runs send it once. At most one per (number, unpaid period, kind), ever."""

    class State(models.TextChoices):
        SENDING = "sending"
        SENT = "sent"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    org = models.ForeignKey(Organization, on_delete=models.PROTECT, related_name="number_notices")
    number = models.ForeignKey(ManagedPhoneNumber, on_delete=models.PROTECT, related_name="notices")
    # The paid_until of the renewal this is about (each unpaid period has its own notices).
    period_due_at = models.DateTimeField()
    kind = models.CharField(max_length=16, choices=NoticeKind.choices)
    state = models.CharField(max_length=16, choices=State.choices, default=State.SENDING)
    recipient = models.CharField(max_length=254)
    claimed_at = models.DateTimeField()
    sent_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = TenantQuerySet.as_manager()

    class Meta:
        db_table = "onboarding_number_notice"
        ordering = ["-claimed_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["number", "period_due_at", "kind"], name="number_notice_once"
            ),
            models.CheckConstraint(
                condition=models.Q(state="sending") | models.Q(sent_at__isnull=False),
                name="number_notice_sent_has_time",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} to {self.recipient} ({self.state})"
