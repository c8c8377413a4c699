"""Abandonment emails' data: what was sent to whom, and who opted out.

Only abandonment/services.py writes these tables (the unsubscribe view goes through it too).
"""

from __future__ import annotations

import uuid

from django.db import models
from django.db.models import Q

from voxanne.models import Organization
from voxanne.tenancy import TenantQuerySet


class Sequence(models.IntegerChoices):
    SOFT_NUDGE = 1, "1 · soft nudge"
    PAIN_REMINDER = 2, "2 · pain reminder"
    OBJECTION_KILLER = 3, "3 · objection killer (£10 credit)"


class EmailState(models.TextChoices):
    # Claimed by a run that is handing it to the email backend right now.
    SENDING = "sending", "Sending"
    # The email backend accepted it.
    SENT = "sent", "Sent"
    # Its run died while handing it over: it may or may not have gone out. Never resent
    # (an email must never go out twice); treated as sent, so email 3's credit is still given.
    UNCONFIRMED = "unconfirmed", "Unconfirmed (worker died mid-send)"


class AbandonmentEmail(models.Model):
    """One email of the sequence for one org: a claim first, then a record of the send.

    At most one row per (org, sequence), ever: the unique constraint is what makes two
    overlapping runs unable to both send.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # No index of its own: UNIQUE(org, sequence) below leads with org and serves its lookups.
    org = models.ForeignKey(
        Organization,
        on_delete=models.CASCADE,
        related_name="abandonment_emails",
        db_index=False,
    )
    sequence = models.PositiveSmallIntegerField(choices=Sequence.choices)
    state = models.CharField(max_length=16, choices=EmailState.choices)
    recipient = models.CharField(max_length=254)
    subject = models.CharField(max_length=200)
    # The run that holds the claim; marking it sent requires the same token.
    claim_token = models.UUIDField()
    claimed_at = models.DateTimeField()
    sent_at = models.DateTimeField(null=True, blank=True)
    credit_applied = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = TenantQuerySet.as_manager()

    class Meta:
        db_table = "abandonment_email"
        verbose_name = "abandonment email"
        ordering = ["org", "sequence"]
        constraints = [
            models.UniqueConstraint(
                fields=["org", "sequence"], name="abandonment_once_per_sequence"
            ),
            models.CheckConstraint(
                condition=Q(sequence__gte=1, sequence__lte=3), name="abandonment_sequence_1_to_3"
            ),
            models.CheckConstraint(
                condition=Q(state__in=EmailState.values), name="abandonment_state_known"
            ),
            models.CheckConstraint(
                condition=Q(state=EmailState.SENDING) | Q(sent_at__isnull=False),
                name="abandonment_sent_has_sent_at",
            ),
            # Only email 3 carries the credit, and only once it went to the email backend.
            models.CheckConstraint(
                condition=Q(credit_applied=False) | (Q(sequence=3) & ~Q(state=EmailState.SENDING)),
                name="abandonment_credit_only_after_email_3",
            ),
        ]
        indexes = [
            # The recovery query: email 3 handed over, credit not yet applied.
            models.Index(
                fields=["org"],
                name="abandonment_credit_due_idx",
                condition=Q(sequence=3, credit_applied=False) & ~Q(state=EmailState.SENDING),
            ),
            # Stale claims left by a dead worker.
            models.Index(
                fields=["claimed_at"],
                name="abandonment_sending_idx",
                condition=Q(state=EmailState.SENDING),
            ),
        ]

    def __str__(self) -> str:
        return f"email {self.sequence} to {self.recipient} ({self.state})"


class OptOut(models.Model):
    """The org's owner asked for no more abandonment emails (one-click unsubscribe)."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    org = models.OneToOneField(
        Organization, on_delete=models.CASCADE, related_name="abandonment_opt_out"
    )
    email = models.CharField(max_length=254, help_text="The address the unsubscribe link was for.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = TenantQuerySet.as_manager()

    class Meta:
        db_table = "abandonment_opt_out"
        verbose_name = "abandonment opt-out"

    def __str__(self) -> str:
        return f"{self.email} unsubscribed"
