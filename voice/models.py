"""The voice domain's data: a clinic's voice agents and the calls they handle.

Both tables keep the names they had in the core (`voxanne_agent`, `voxanne_call`) and their
row-level security; only their Django app changed.
"""

from __future__ import annotations

import uuid

from django.db import models

from voxanne.models import Organization, TimestampedModel
from voxanne.tenancy import TenantQuerySet


class Agent(TimestampedModel):
    """A voice agent configured for a clinic."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    org = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="agents")
    name = models.CharField(max_length=200)
    persona = models.CharField(max_length=100, blank=True)
    voice = models.CharField(max_length=100, blank=True)
    vapi_assistant_id = models.CharField(max_length=100, blank=True)
    is_active = models.BooleanField(default=True)

    objects = TenantQuerySet.as_manager()

    class Meta:
        db_table = "voxanne_agent"
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["org", "-created_at"], name="agent_org_created_idx")]

    def __str__(self) -> str:
        return self.name


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
    caller_number = models.CharField(max_length=32, blank=True)
    status = models.CharField(max_length=32, default="completed")
    started_at = models.DateTimeField()
    duration_seconds = models.PositiveIntegerField(default=0)
    summary = models.TextField(blank=True)

    objects = TenantQuerySet.as_manager()

    class Meta:
        db_table = "voxanne_call"
        ordering = ["-started_at"]
        indexes = [models.Index(fields=["org", "-started_at"], name="call_org_started_idx")]
