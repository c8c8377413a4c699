"""Onboarding's data: the wizard's telemetry events."""

from __future__ import annotations

import uuid

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
