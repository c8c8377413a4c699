"""The prepaid wallet: one balance per clinic and its append-only ledger, in pence.

Only billing/services.py writes these tables. The database holds the invariants
(see migrations/0002_ledger_invariants.py and the `ledger_spending_not_below_zero` check):
ledger rows immutable, a refund never exceeds what is left of the entry it reverses, at every
commit the balance equals the sum of the org's ledger amounts, and only money that has already
gone (ALWAYS_RECORDED_TYPES: a refund to the card, a chargeback, a finished call) may take a
balance below zero.

Top-ups (Stripe Checkout), disputes and the webhook inbox are written by billing/topups.py.
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.db.models import F, Q

from voxanne.models import Organization
from voxanne.tenancy import TenantQuerySet

LOW_BALANCE_DEFAULT_PENCE = 500


def format_pence(pence: int) -> str:
    """1234 -> '£12.34', -50 -> '-£0.50'."""
    sign = "-" if pence < 0 else ""
    pounds, rest = divmod(abs(pence), 100)
    return f"{sign}£{pounds:,}.{rest:02d}"


class Wallet(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    org = models.OneToOneField(Organization, on_delete=models.PROTECT, related_name="wallet")
    balance_pence = models.BigIntegerField(default=0)
    # Sequence number of the org's newest ledger entry (0: none yet).
    last_sequence = models.BigIntegerField(default=0)
    # Set while spending is refused (a payment dispute is open); support may clear it.
    frozen_at = models.DateTimeField(null=True, blank=True)
    frozen_reason = models.CharField(max_length=500, blank=True)
    # The low-balance email goes once per crossing below low_balance_pence: low_balance_alerted_at
    # is set when it is claimed and cleared when the balance is back at or above the line.
    low_balance_pence = models.BigIntegerField(default=LOW_BALANCE_DEFAULT_PENCE)
    low_balance_alerted_at = models.DateTimeField(null=True, blank=True)
    # The balance below which a debit asks for an auto-recharge: the clinic's threshold while
    # auto-recharge is on, not paused and has a card; null otherwise (billing/recharge.py).
    auto_recharge_below_pence = models.BigIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = TenantQuerySet.as_manager()

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(last_sequence__gte=0), name="wallet_sequence_not_negative"
            ),
            models.CheckConstraint(
                condition=Q(low_balance_pence__gte=0), name="wallet_low_balance_not_negative"
            ),
        ]
        permissions = [
            ("issue_refund", "Can refund a wallet debit"),
            ("add_credit", "Can add credit to a wallet"),
            ("unfreeze_wallet", "Can unfreeze a wallet on hold"),
        ]

    def __str__(self) -> str:
        return f"{self.org} wallet {self.balance_formatted}"

    @property
    def balance_formatted(self) -> str:
        return format_pence(self.balance_pence)

    @property
    def is_low_balance(self) -> bool:
        return self.is_low(self.balance_pence, self.low_balance_pence)

    @staticmethod
    def is_low(balance_pence: int, low_balance_pence: int) -> bool:
        """The one definition of a low balance (the wallet API reads it without a model)."""
        return balance_pence < low_balance_pence


class EntryType(models.TextChoices):
    TOPUP = "topup", "Top-up"
    PHONE_PROVISIONING = "phone_provisioning", "Phone number"
    REFUND = "refund", "Refund"
    BONUS = "bonus", "Bonus"
    ADJUSTMENT = "adjustment", "Adjustment"
    CARD_REFUND = "card_refund", "Refund to card"
    CHARGEBACK = "chargeback", "Chargeback"
    CALL_CHARGE = "call_charge", "Call"
    NUMBER_RENTAL = "number_rental", "Number rental"


# What a clinic reads for money support moved by hand; support's own reason is kept apart as
# the entry's internal_note, which clinics never see.
SUPPORT_DESCRIPTIONS = {
    EntryType.TOPUP: "Top-up",
    EntryType.ADJUSTMENT: "Credit from Voxanne support",
    EntryType.REFUND: "Refund from Voxanne support",
}

CREDIT_TYPES = (EntryType.TOPUP, EntryType.BONUS, EntryType.REFUND)
DEBIT_TYPES = (
    EntryType.PHONE_PROVISIONING,
    EntryType.CARD_REFUND,
    EntryType.CHARGEBACK,
    EntryType.CALL_CHARGE,
    EntryType.NUMBER_RENTAL,
)
# Money that has already moved at the provider: always recorded, even below zero. Everything
# else that takes money is a decision to spend, refused when it would leave the balance short.
# A finished call is one of these too: the gate before the call is where spending is refused.
ALWAYS_RECORDED_TYPES = (EntryType.CARD_REFUND, EntryType.CHARGEBACK, EntryType.CALL_CHARGE)
# Money that went back to the card: refunding it to the wallet as well would pay twice.
BACK_TO_CARD_TYPES = (EntryType.CARD_REFUND, EntryType.CHARGEBACK)


class LedgerEntry(models.Model):
    """One movement of money. Immutable once written (a trigger refuses UPDATE/DELETE).

    No updated_at: an entry is never updated.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    org = models.ForeignKey(Organization, on_delete=models.PROTECT, related_name="ledger_entries")
    wallet = models.ForeignKey(Wallet, on_delete=models.PROTECT, related_name="entries")
    sequence = models.BigIntegerField()
    type = models.CharField(max_length=32, choices=EntryType.choices)
    amount_pence = models.BigIntegerField()
    balance_after_pence = models.BigIntegerField()
    description = models.CharField(max_length=500, blank=True)  # shown to the clinic
    # Staff only (admin): why support moved the money. The database default lets writers that
    # do not name the column go on appending.
    internal_note = models.CharField(max_length=500, blank=True, default="", db_default="")
    reverses = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="reversals"
    )
    idempotency_key = models.CharField(max_length=255)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    objects = TenantQuerySet.as_manager()

    class Meta:
        db_table = "billing_ledger_entry"
        verbose_name = "ledger entry"
        verbose_name_plural = "ledger entries"
        ordering = ["-sequence"]
        constraints = [
            models.UniqueConstraint(
                fields=["org", "idempotency_key"], name="ledger_key_unique_per_org"
            ),
            models.UniqueConstraint(
                fields=["org", "sequence"], name="ledger_sequence_unique_per_org"
            ),
            models.CheckConstraint(condition=~Q(amount_pence=0), name="ledger_amount_not_zero"),
            # The one non-negative rule: an entry may leave the balance below zero only when it
            # adds money, or records money already gone. The deferred balance-equals-ledger
            # trigger makes the wallet's balance the newest entry's balance_after.
            models.CheckConstraint(
                condition=Q(balance_after_pence__gte=0)
                | Q(amount_pence__gt=0)
                | Q(type__in=ALWAYS_RECORDED_TYPES),
                name="ledger_spending_not_below_zero",
            ),
            models.CheckConstraint(condition=Q(sequence__gte=1), name="ledger_sequence_positive"),
            models.CheckConstraint(
                condition=~Q(type__in=CREDIT_TYPES) | Q(amount_pence__gt=0),
                name="ledger_credit_types_positive",
            ),
            models.CheckConstraint(
                condition=~Q(type__in=DEBIT_TYPES) | Q(amount_pence__lt=0),
                name="ledger_debit_types_negative",
            ),
            models.CheckConstraint(
                condition=(Q(type=EntryType.REFUND) & Q(reverses__isnull=False))
                | (~Q(type=EntryType.REFUND) & Q(reverses__isnull=True)),
                name="ledger_refund_reverses_an_entry",
            ),
            models.CheckConstraint(
                condition=~Q(reverses=F("id")), name="ledger_entry_not_self_reversing"
            ),
        ]
        indexes = [
            models.Index(fields=["org", "type", "-sequence"], name="ledger_org_type_seq_idx"),
            models.Index(
                fields=["reverses"], name="ledger_reverses_idx", condition=Q(reverses__isnull=False)
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_type_display()} {format_pence(self.amount_pence)}"

    @property
    def amount_formatted(self) -> str:
        return format_pence(self.amount_pence)


# --- Stripe Checkout top-ups, disputes, and the webhook inbox ------------------------------


class TopUpStatus(models.TextChoices):
    PENDING = "pending"
    PAID = "paid"
    FAILED = "failed"
    EXPIRED = "expired"
    REFUNDED = "refunded"
    PARTIALLY_REFUNDED = "partially_refunded"


# A status only moves to a higher rank. `paid` outranks failed/expired: a payment Stripe
# reports is credited whatever was concluded before (a late async payment, our own expiry).
TOPUP_STATUS_RANK = {
    TopUpStatus.PENDING: 0,
    TopUpStatus.FAILED: 1,
    TopUpStatus.EXPIRED: 1,
    TopUpStatus.PAID: 2,
    TopUpStatus.PARTIALLY_REFUNDED: 3,
    TopUpStatus.REFUNDED: 4,
}


class TopUp(models.Model):
    """One Stripe Checkout Session for money into a wallet. Its credit is the ledger entry
    keyed `topup:<stripe_session_id>`, for Stripe's amount_total."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    org = models.ForeignKey(Organization, on_delete=models.PROTECT, related_name="topups")
    amount_pence = models.BigIntegerField()
    status = models.CharField(
        max_length=32, choices=TopUpStatus.choices, default=TopUpStatus.PENDING
    )
    # The client's Idempotency-Key, if it sent one ("" otherwise).
    idempotency_key = models.CharField(max_length=255, blank=True)
    stripe_session_id = models.CharField(max_length=255, null=True, blank=True, unique=True)
    checkout_url = models.TextField(blank=True)
    payment_intent_id = models.CharField(max_length=255, blank=True, db_index=True)
    charge_id = models.CharField(max_length=255, blank=True, db_index=True)
    receipt_url = models.TextField(blank=True)
    # What Stripe took (amount_total) once paid, and how much of it went back to the card.
    paid_pence = models.BigIntegerField(null=True, blank=True)
    refunded_pence = models.BigIntegerField(default=0)
    paid_at = models.DateTimeField(null=True, blank=True)
    receipt_sent_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = TenantQuerySet.as_manager()

    class Meta:
        db_table = "billing_topup"
        verbose_name = "top-up"
        ordering = ["-created_at"]
        permissions = [("refund_to_card", "Can refund a top-up to the card")]
        constraints = [
            models.UniqueConstraint(
                fields=["org", "idempotency_key"],
                condition=~Q(idempotency_key=""),
                name="topup_key_unique_per_org",
            ),
            models.CheckConstraint(condition=Q(amount_pence__gt=0), name="topup_amount_positive"),
            models.CheckConstraint(
                condition=Q(refunded_pence__gte=0), name="topup_refunded_not_negative"
            ),
            models.CheckConstraint(
                condition=Q(status__in=TopUpStatus.values), name="topup_status_known"
            ),
        ]
        indexes = [
            models.Index(fields=["org", "-created_at"], name="topup_org_created_idx"),
            models.Index(
                fields=["created_at"],
                name="topup_pending_created_idx",
                condition=Q(status=TopUpStatus.PENDING),
            ),
            # What send_receipts looks for every minute.
            models.Index(
                fields=["paid_at"],
                name="topup_receipt_due_idx",
                condition=Q(paid_at__isnull=False, receipt_sent_at__isnull=True),
            ),
        ]

    def __str__(self) -> str:
        return f"Top-up {format_pence(self.amount_pence)} ({self.status})"


class DisputeStatus(models.TextChoices):
    OPEN = "open"
    WON = "won"
    LOST = "lost"


class Dispute(models.Model):
    """A chargeback at Stripe. While one is open the org's wallet is frozen."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    org = models.ForeignKey(Organization, on_delete=models.PROTECT, related_name="disputes")
    topup = models.ForeignKey(TopUp, on_delete=models.PROTECT, related_name="disputes")
    stripe_dispute_id = models.CharField(max_length=255, unique=True)
    amount_pence = models.BigIntegerField()
    status = models.CharField(max_length=16, choices=DisputeStatus.choices)
    closed_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = TenantQuerySet.as_manager()

    class Meta:
        db_table = "billing_dispute"
        constraints = [
            models.CheckConstraint(condition=Q(amount_pence__gt=0), name="dispute_amount_positive"),
        ]

    def __str__(self) -> str:
        return f"Dispute {self.stripe_dispute_id} ({self.status})"


class WebhookOutcome(models.TextChoices):
    PROCESSED = "processed"
    IGNORED = "ignored"


class WebhookEvent(models.Model):
    """The inbox: one row per provider event, stored in the transaction that applied it.

    Unique by (provider, event_id), so a redelivery finds it and changes nothing. A delivery
    whose processing failed leaves no row (the transaction rolled back) and is retried.
    Not tenant-owned: events arrive before anyone knows whose they are.
    """

    class Provider(models.TextChoices):
        STRIPE = "stripe"
        VAPI = "vapi"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    provider = models.CharField(max_length=16, choices=Provider.choices)
    event_id = models.CharField(max_length=255)
    type = models.CharField(max_length=100)
    payload = models.JSONField()
    outcome = models.CharField(max_length=16, choices=WebhookOutcome.choices)
    # Why an event was ignored (no matching top-up, unknown type), for support.
    error = models.TextField(blank=True)
    received_at = models.DateTimeField()
    processed_at = models.DateTimeField()
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "billing_webhook_event"
        ordering = ["-received_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["provider", "event_id"], name="webhook_event_unique_per_provider"
            ),
        ]
        indexes = [
            models.Index(fields=["provider", "type", "-received_at"], name="webhook_type_idx")
        ]

    def __str__(self) -> str:
        return f"{self.provider} {self.type} {self.event_id}"


# --- Auto-recharge: a saved card charged off-session when the balance runs low ------------
# Only billing/recharge.py writes these tables (the credit itself goes through services.py).

AUTO_RECHARGE_MIN_THRESHOLD_PENCE = 500


class AutoRecharge(models.Model):
    """A clinic's auto-recharge settings and the saved card they charge.

    The card is the payment method (and customer) of the clinic's paid Checkout top-up, taken
    from that PaymentIntent. A refused charge pauses it (`paused_reason`, `enabled` stays
    true) until the clinic saves its settings again.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    org = models.OneToOneField(Organization, on_delete=models.PROTECT, related_name="auto_recharge")
    enabled = models.BooleanField(default=False)
    threshold_pence = models.BigIntegerField(default=1000)
    amount_pence = models.BigIntegerField(default=2500)
    stripe_customer_id = models.CharField(max_length=255, blank=True)
    stripe_payment_method_id = models.CharField(max_length=255, blank=True)
    paused_reason = models.CharField(max_length=500, blank=True)
    paused_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = TenantQuerySet.as_manager()

    class Meta:
        db_table = "billing_auto_recharge"
        constraints = [
            models.CheckConstraint(
                condition=Q(threshold_pence__gte=AUTO_RECHARGE_MIN_THRESHOLD_PENCE),
                name="auto_recharge_threshold_at_least_500",
            ),
            models.CheckConstraint(
                condition=Q(amount_pence__gt=0), name="auto_recharge_amount_positive"
            ),
        ]

    def __str__(self) -> str:
        state = "paused" if self.paused_reason else ("on" if self.enabled else "off")
        return f"Auto-recharge {state}"

    @property
    def has_payment_method(self) -> bool:
        return bool(self.stripe_payment_method_id and self.stripe_customer_id)


class RechargeState(models.TextChoices):
    IN_FLIGHT = "in_flight", "In flight"
    SUCCEEDED = "succeeded", "Paid"
    FAILED = "failed", "Failed (auto-recharge paused)"


class RechargeAttempt(models.Model):
    """One off-session charge of the saved card. Its Stripe idempotency key is
    `recharge:<id>`: retries of this attempt reuse it, the next attempt gets its own. At most
    one in flight per org (the database says so); its credit is keyed `recharge:<pi id>`."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    org = models.ForeignKey(Organization, on_delete=models.PROTECT, related_name="recharges")
    state = models.CharField(
        max_length=16, choices=RechargeState.choices, default=RechargeState.IN_FLIGHT
    )
    amount_pence = models.BigIntegerField()
    stripe_customer_id = models.CharField(max_length=255)
    stripe_payment_method_id = models.CharField(max_length=255)
    payment_intent_id = models.CharField(max_length=255, blank=True, db_index=True)
    # Whoever is calling Stripe for it holds it until then; a lapsed one is retried.
    lease_until = models.DateTimeField()
    error_code = models.CharField(max_length=64, blank=True)
    error_detail = models.TextField(blank=True)
    owner_notified_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = TenantQuerySet.as_manager()

    class Meta:
        db_table = "billing_recharge_attempt"
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["org"],
                condition=Q(state="in_flight"),
                name="one_recharge_in_flight_per_org",
            ),
            models.CheckConstraint(
                condition=Q(amount_pence__gt=0), name="recharge_amount_positive"
            ),
            models.CheckConstraint(
                condition=Q(state="in_flight") | Q(finished_at__isnull=False),
                name="recharge_finished_has_time",
            ),
        ]
        indexes = [
            models.Index(fields=["org", "-created_at"], name="recharge_org_created_idx"),
        ]

    def __str__(self) -> str:
        return f"Recharge {format_pence(self.amount_pence)} ({self.get_state_display()})"

    @property
    def stripe_idempotency_key(self) -> str:
        return f"recharge:{self.pk}"
