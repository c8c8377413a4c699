"""The voice domain's data: a clinic's voice agents and the calls they handle.

Both tables keep the names they had in the core (`voxanne_agent`, `voxanne_call`) and their
row-level security; only their Django app changed.
"""

from __future__ import annotations

import uuid

from django.db import models
from django.db.models import Q

from billing.models import LedgerEntry
from voxanne.models import Organization, TimestampedModel
from voxanne.tenancy import TenantQuerySet


class Agent(TimestampedModel):
    """A clinic's AI receptionist: our row, and its assistant in Vapi.

    Created `creating` (in a short transaction, before Vapi is asked), `ready` once its Vapi
    assistant is recorded. The assistant is named `vapi_name`, so a retry after a crash or a
    timeout finds it at Vapi instead of creating a second one.
    """

    class Status(models.TextChoices):
        CREATING = "creating"
        READY = "ready"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    org = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="agents")
    name = models.CharField(max_length=200)
    persona = models.CharField(max_length=100, blank=True)
    voice = models.CharField(max_length=100, blank=True)
    first_message = models.TextField(blank=True)
    instructions = models.TextField(blank=True)
    vapi_assistant_id = models.CharField(max_length=100, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.CREATING)
    is_active = models.BooleanField(default=True)

    objects = TenantQuerySet.as_manager()

    class Meta:
        db_table = "voxanne_agent"
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["org", "-created_at"], name="agent_org_created_idx"),
            # A call report without a number is matched to its clinic by the assistant.
            models.Index(
                fields=["vapi_assistant_id"],
                name="agent_vapi_assistant_idx",
                condition=~Q(vapi_assistant_id=""),
            ),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["org"], condition=Q(is_active=True), name="one_active_agent_per_org"
            ),
            models.CheckConstraint(
                condition=~Q(status="ready") | ~Q(vapi_assistant_id=""),
                name="ready_agent_has_assistant",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def vapi_name(self) -> str:
        """The Vapi assistant's name: ours, and within Vapi's 40 characters."""
        return f"vx-{self.id.hex}"


class Call(TimestampedModel):
    """One call handled by a clinic's voice agent."""

    class Direction(models.TextChoices):
        INBOUND = "inbound"
        OUTBOUND = "outbound"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    org = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="calls")
    agent = models.ForeignKey(
        Agent, null=True, blank=True, on_delete=models.SET_NULL, related_name="calls"
    )
    direction = models.CharField(
        max_length=10, choices=Direction.choices, default=Direction.INBOUND
    )
    # Vapi's call id: one Call per Vapi call, however often its report arrives.
    vapi_call_id = models.CharField(max_length=100, unique=True, null=True, blank=True)
    caller_number = models.CharField(max_length=32, blank=True)
    status = models.CharField(max_length=32, default="completed")
    started_at = models.DateTimeField()
    ended_at = models.DateTimeField(null=True, blank=True)
    duration_seconds = models.PositiveIntegerField(default=0)
    ended_reason = models.CharField(max_length=200, blank=True)
    summary = models.TextField(blank=True)
    recording_url = models.TextField(blank=True)
    cost_pence = models.BigIntegerField(default=0)
    # The call's `call_charge` ledger entry (none for a call too short to cost anything).
    charge = models.OneToOneField(
        LedgerEntry, null=True, blank=True, on_delete=models.PROTECT, related_name="call"
    )

    objects = TenantQuerySet.as_manager()

    class Meta:
        db_table = "voxanne_call"
        ordering = ["-started_at"]
        indexes = [models.Index(fields=["org", "-started_at"], name="call_org_started_idx")]
        constraints = [
            models.CheckConstraint(condition=Q(cost_pence__gte=0), name="call_cost_not_negative")
        ]
