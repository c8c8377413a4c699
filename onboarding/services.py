"""Onboarding's writes and shared reads: the wizard's telemetry, its status, its completion.

This module is the only writer of onboarding events and of an organization's onboarding
fields (clinic name, specialty, onboarding_completed_at).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import Error, connection, transaction
from django.db.models import (
    BooleanField,
    ExpressionWrapper,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
)
from django.utils import timezone

from billing.models import EntryType, LedgerEntry
from onboarding.models import EventName, OnboardingEvent
from voxanne import db
from voxanne.errors import ApiError
from voxanne.models import Organization, User

logger = logging.getLogger(__name__)

# Telemetry and the status read must never keep the wizard or the dashboard waiting on a
# locked or overloaded database: past this, the statement is cancelled and we degrade.
EVENT_WRITE_LIMIT_MS = 1000
STATUS_READ_LIMIT_MS = 1000


class OnboardingCompletionFailed(ApiError):
    status_code = 500
    default_message = "Failed to complete onboarding"
    code = "onboarding_completion_failed"


@dataclass(frozen=True)
class OnboardingStatus:
    needs_onboarding: bool
    completed_at: datetime | None
    clinic_name: str | None
    specialty: str | None


# What the dashboard gets when the status cannot be read: never block an existing clinic.
STATUS_WHEN_UNKNOWN = OnboardingStatus(
    needs_onboarding=False, completed_at=None, clinic_name=None, specialty=None
)


def _set_statement_timeout(value: str, *, local: bool) -> str:
    """Set statement_timeout for this transaction (`local`) or the session, in one statement;
    returns the value it replaced."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT current_setting('statement_timeout'), set_config('statement_timeout', %s, %s)",
            [value, local],
        )
        return cursor.fetchone()[0]


@contextmanager
def _time_limited_transaction(limit_ms: int) -> Iterator[None]:
    """A short transaction (a savepoint when nested) whose statements give up after limit_ms.

    A failure inside rolls back only this block, so the connection stays usable for the rest
    of the request.
    """
    nested = connection.in_atomic_block
    with transaction.atomic():
        previous = _set_statement_timeout(f"{limit_ms}ms", local=True)
        yield
        if nested:  # SET LOCAL would outlive the savepoint: give the outer transaction its own back
            _set_statement_timeout(previous, local=True)


@contextmanager
def _time_limited_read(limit_ms: int) -> Iterator[None]:
    """Statements inside give up after limit_ms; for reads.

    Outside a transaction the limit is set on the session and put back afterwards: two
    statements, where a transaction with SET LOCAL costs four (BEGIN, SET, ..., COMMIT) on a
    read the dashboard makes on every load. Inside one, _time_limited_transaction's savepoint.
    """
    if connection.in_atomic_block:
        with _time_limited_transaction(limit_ms):
            yield
        return
    previous = _set_statement_timeout(f"{limit_ms}ms", local=False)
    try:
        yield
    finally:
        _set_statement_timeout(previous, local=False)


def record_event(
    *,
    org: Organization,
    user: User | None,
    event_name: EventName | str,
    step_index: int,
    metadata: dict[str, Any] | None = None,
    session_id: str = "",
) -> OnboardingEvent | None:
    """Stores one wizard event for the org, fire-and-forget.

    Never raises for a database failure (error, lock, timeout): telemetry must not block the
    wizard. The failure is logged and None is returned instead of the stored event.
    """
    try:
        with _time_limited_transaction(EVENT_WRITE_LIMIT_MS):
            return OnboardingEvent.objects.create(
                org=org,
                user=user,
                event_name=event_name,
                step_index=step_index,
                metadata=metadata if metadata is not None else {},
                session_id=session_id,
            )
    except Error:
        logger.error(
            "onboarding event not stored",
            exc_info=True,
            extra={"org_id": str(org.pk), "event_name": str(event_name)},
        )
        return None


def onboarding_status(*, org: Organization) -> OnboardingStatus:
    """The org's onboarding state, read fresh from the database.

    Never raises for a database failure: it is logged and STATUS_WHEN_UNKNOWN is returned.
    """
    try:
        with _time_limited_read(STATUS_READ_LIMIT_MS):
            # get(), not first(): a primary key needs no ORDER BY, which is a third of the
            # query's compile time (bench/api.py reads this on every dashboard load).
            row = Organization.objects.values_list(
                "onboarding_completed_at", "clinic_name", "specialty"
            ).get(pk=org.pk)
    except Organization.DoesNotExist:
        return STATUS_WHEN_UNKNOWN
    except Error:
        logger.error(
            "onboarding status unreadable, answering the default",
            exc_info=True,
            extra={"org_id": str(org.pk)},
        )
        return STATUS_WHEN_UNKNOWN
    completed_at, clinic_name, specialty = row
    return OnboardingStatus(
        needs_onboarding=completed_at is None,
        completed_at=completed_at,
        clinic_name=clinic_name,
        specialty=specialty,
    )


def complete_onboarding(
    *, org: Organization, clinic_name: str | None = None, specialty: str | None = None
) -> bool:
    """Marks the org's onboarding complete and stores the clinic name / specialty given.

    None leaves a field as it is. The first completion time is kept for good, also against
    concurrent calls. Returns True when this call was the one that completed onboarding.
    Raises OnboardingCompletionFailed when the database fails (nothing is changed then).
    """
    now = timezone.now()
    profile = {
        field: value
        for field, value in (("clinic_name", clinic_name), ("specialty", specialty))
        if value is not None
    }
    try:
        with transaction.atomic():
            # Conditional: of concurrent first calls exactly one matches the IS NULL row.
            not_yet_completed = Organization.objects.filter(
                pk=org.pk, onboarding_completed_at__isnull=True
            )
            completed_now = not_yet_completed.update(onboarding_completed_at=now, updated_at=now)
            if profile:
                Organization.objects.filter(pk=org.pk).update(**profile, updated_at=now)
    except Error as exc:
        logger.error("onboarding completion failed", exc_info=True, extra={"org_id": str(org.pk)})
        raise OnboardingCompletionFailed() from exc
    return completed_now == 1


def payment_abandonment(
    organizations: QuerySet[Organization], *, as_of: datetime | None = None
) -> QuerySet[Organization]:
    """`organizations` annotated with the one definition of a clinic that left at payment.

    `viewed_payment_but_not_paid`: a payment_viewed event (at or before `as_of`, if given) and
    no money paid in. "Paid" is the ledger's word, never telemetry's: the clinic's wallet has a
    `topup` entry (a Stripe top-up credited, or a payment support recorded), whenever it was
    written and whatever happened to it later (refunds). A `payment_success` event, which the
    browser can send about itself, changes nothing here. `first_payment_view_at`: the earliest
    such view, or None. Filter on the first (the admin) or read both per row (the abandonment
    job): the values are per-row subqueries (the paid one probes the ledger's
    (org, type, -sequence) index), so a page of organizations costs one query.
    """
    views = OnboardingEvent.objects.filter(org=OuterRef("pk"), event_name=EventName.PAYMENT_VIEWED)
    if as_of is not None:
        views = views.filter(created_at__lte=as_of)
    topups = LedgerEntry.objects.filter(org=OuterRef("pk"), type=EntryType.TOPUP)
    # "Viewed" is "has a first view" and "paid" is "has a newest top-up entry", not EXISTS:
    # Postgres may run an EXISTS as one hashed scan of every matching row (every event, every
    # top-up of every clinic) on every page of organizations; a LIMIT 1 subquery is probed per
    # row through an index (ledger_org_type_seq_idx here).
    return organizations.annotate(
        first_payment_view_at=Subquery(views.order_by("created_at").values("created_at")[:1]),
        topup_entry_id=Subquery(topups.order_by().values("pk")[:1]),
    ).annotate(
        viewed_payment_but_not_paid=ExpressionWrapper(
            Q(first_payment_view_at__isnull=False) & Q(topup_entry_id__isnull=True),
            output_field=BooleanField(),
        ),
    )


def record_payment_success(*, org_id, topup_id) -> OnboardingEvent:
    """The server's own `payment_success` event for a paid top-up, for the wizard's telemetry
    (who paid is decided by the ledger: `payment_abandonment`). Joins the caller's transaction."""
    return db.insert(  # in every paid delivery: voxanne/db.py says why not create()
        OnboardingEvent(
            org_id=org_id,
            event_name=EventName.PAYMENT_SUCCESS,
            step_index=3,
            metadata={"source": "stripe", "topup_id": str(topup_id)},
        )
    )


def on_topup_paid(sender, topup, **kwargs) -> None:
    record_payment_success(org_id=topup.org_id, topup_id=topup.pk)
