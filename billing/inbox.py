"""The webhook inbox, one mechanism for every provider (Stripe, Vapi): store the event and
apply its effect in ONE transaction.

A delivery whose effect fails leaves no row (the transaction rolls back), so the provider's
retry, or our reconciler, is processed as if it were the first. A redelivery of a stored event
changes nothing. Nothing is marked processed before it is.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from django.db import transaction
from django.utils import timezone

from billing.models import WebhookEvent, WebhookOutcome
from voxanne import db

DUPLICATE = "duplicate"


@dataclass(frozen=True)
class Handled:
    event_id: str
    outcome: str  # processed | ignored | duplicate


def already_received(*, provider: str, event_id: str) -> bool:
    return WebhookEvent.objects.filter(provider=provider, event_id=event_id).exists()


def receive(
    *,
    provider: str,
    event_id: str,
    type: str,
    payload: dict,
    apply: Callable[[], str],
) -> Handled:
    """Store one provider event and apply it, in one durable transaction.

    `apply` runs inside the transaction, after the event row is written, and returns why the
    event was ignored ("" when it had its effect). A stored event answers `duplicate` without
    an error, so nothing is rolled back; a concurrent delivery of the same event waits on the
    unique index for the first to end, then answers `duplicate` (or, if the first rolled back,
    goes ahead). Whatever `apply` raises (and any database error) rolls both back and
    propagates: answer 5xx, nothing is stored.
    """
    now = timezone.now()
    event = WebhookEvent(
        provider=provider,
        event_id=event_id,
        type=str(type)[:100],
        payload=payload,
        outcome=WebhookOutcome.PROCESSED,
        received_at=now,
        processed_at=now,
    )
    with transaction.atomic(durable=True):
        if not db.insert_new(event):
            return Handled(event_id, DUPLICATE)
        note = apply()
        if note:
            event.outcome, event.error = WebhookOutcome.IGNORED, note
            event.save(update_fields=["outcome", "error", "updated_at"])
    return Handled(event_id, event.outcome)
