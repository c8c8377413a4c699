"""The provisioning reconciler: ends the attempts whose driver died.

Whoever drives an attempt (provisioning.py's request path) holds its lease, renewed at every
step. A process that dies leaves an attempt whose lease lapses. `reconcile_attempt` claims such
an attempt with a conditional UPDATE, looks up at the providers what the dead process did but
never wrote down (the org's subaccount and the number by FriendlyName, the import by number),
and then decides from the facts alone (`next_step`):

    state         lease    provider ids set                 next
    ------------  -------  -------------------------------  -------------------------------------
    succeeded     any      any                              nothing: it has ended
    failed        any      any                              nothing: it has ended
    in_progress   held     any                              wait: its driver may still finish it
    compensating  held     any                              wait: its driver is undoing it
    in_progress   lapsed   number and import                finish: store the number, keep the
                                                            charge
    in_progress   lapsed   number, no import                undo: release the number, refund
    in_progress   lapsed   no number (subaccount or none)   undo: refund (a subaccount is kept
                                                            for the org's next attempt)
    compensating  lapsed   any                              undo: release what is left, refund
                                                            unless already refunded

An undo that cannot finish now (a provider still down) refunds anyway and leaves the attempt
compensating, lease lapsed, for the next run. `reconcile_stuck_attempts` runs every minute
(Celery beat), from `manage.py reconcile_provisioning` and from an admin action.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from enum import StrEnum

from django.utils import timezone

from onboarding import telephony
from onboarding.models import (
    ACTIVE_ATTEMPT_STATES,
    AttemptState,
    ProvisioningAttempt,
    TwilioSubaccount,
)
from onboarding.provisioning import (
    PROVIDER_ERRORS,
    LeaseLost,
    ProvisioningFailed,
    compensate,
    lease_until,
    record_import,
    record_purchase,
    settle,
    store_subaccount,
    unrecorded_subaccount,
)
from voice import vapi

logger = logging.getLogger(__name__)


class Next(StrEnum):
    NOTHING = "nothing"
    WAIT = "wait"
    FINISH = "finish"
    UNDO = "undo"


def next_step(*, state: str, lease_lapsed: bool, number_bought: bool, imported: bool) -> Next:
    """What to do with an attempt, by the table above. Pure: facts in, decision out."""
    if state not in ACTIVE_ATTEMPT_STATES:
        return Next.NOTHING
    if not lease_lapsed:
        return Next.WAIT
    if state == AttemptState.IN_PROGRESS and number_bought and imported:
        return Next.FINISH
    return Next.UNDO


@dataclass(frozen=True)
class Reconciled:
    attempt_id: uuid.UUID
    outcome: str  # "finished", "refunded" or "retry_later"


def _claim(attempt_id: uuid.UUID | str) -> uuid.UUID | None:
    """Take an active attempt whose lease has lapsed; None if it is not ours to take."""
    token = uuid.uuid4()
    now = timezone.now()
    claimed = ProvisioningAttempt.objects.filter(
        pk=attempt_id, state__in=ACTIVE_ATTEMPT_STATES, lease_expires_at__lt=now
    ).update(lease_token=token, lease_expires_at=lease_until(now), updated_at=now)
    return token if claimed == 1 else None


def _recover_unrecorded(attempt: ProvisioningAttempt, token: uuid.UUID) -> None:
    """Find provider results a dead process never wrote down (by FriendlyName, by number)."""
    if not attempt.subaccount_sid and not TwilioSubaccount.objects.for_org(attempt.org_id).exists():
        found = unrecorded_subaccount(attempt.org_id)
        if found is not None:  # kept for the org's next attempt, which would look for it anyway
            store_subaccount(attempt, token, found)
    if attempt.subaccount_sid and not attempt.twilio_number_sid:
        found = telephony.find_numbers_named(
            subaccount_sid=attempt.subaccount_sid, friendly_name=attempt.number_friendly_name
        )
        if found:
            keep, *extra = found
            for number in extra:  # never expected; a number nobody can use is released
                telephony.release_number(
                    subaccount_sid=attempt.subaccount_sid, number_sid=number.sid
                )
            record_purchase(attempt, token, keep)
    if attempt.twilio_number_sid and not attempt.vapi_phone_id:
        phone_id = vapi.find_import(phone_number=attempt.phone_number)
        if phone_id:
            record_import(attempt, token, phone_id)


def reconcile_attempt(*, attempt_id: uuid.UUID | str) -> Reconciled | None:
    """Drive one stuck attempt to an end: finished when bought and imported, else undone and
    refunded. Returns None when the attempt is not stuck (still leased, or already ended).
    Run inside system_context."""
    token = _claim(attempt_id)  # succeeds exactly for an active attempt whose lease lapsed
    attempt = ProvisioningAttempt.objects.select_related("org", "hold").filter(pk=attempt_id)
    attempt = attempt.first()
    if attempt is None:
        return None
    try:
        if token is not None:
            _recover_unrecorded(attempt, token)
        step = next_step(
            state=attempt.state,
            lease_lapsed=token is not None,
            number_bought=bool(attempt.twilio_number_sid),
            imported=bool(attempt.vapi_phone_id),
        )
        if step is Next.FINISH:
            settle(attempt, token)
            _mark_reconciled(attempt)
            return Reconciled(attempt.pk, "finished")
        if step is not Next.UNDO:
            return None
        error = ProvisioningFailed()
        compensate(attempt, token, error=error, detail=attempt.error_detail or "stuck attempt")
        attempt.refresh_from_db()
        _mark_reconciled(attempt)
        outcome = "refunded" if attempt.state == AttemptState.FAILED else "retry_later"
        return Reconciled(attempt.pk, outcome)
    except (*PROVIDER_ERRORS, LeaseLost) as exc:
        logger.warning("reconciling attempt %s must wait: %r", attempt_id, exc)
        ProvisioningAttempt.objects.filter(pk=attempt_id, lease_token=token).update(
            lease_token=None, lease_expires_at=timezone.now()
        )
        return Reconciled(attempt.pk, "retry_later")


def _mark_reconciled(attempt: ProvisioningAttempt) -> None:
    ProvisioningAttempt.objects.filter(pk=attempt.pk).update(reconciled_at=timezone.now())


def reconcile_stuck_attempts(*, limit: int = 100) -> list[Reconciled]:
    """Every active attempt whose lease has lapsed, driven to an end (see reconcile_attempt).
    Safe to run concurrently: each attempt is claimed before it is touched."""
    stuck = ProvisioningAttempt.objects.filter(
        state__in=ACTIVE_ATTEMPT_STATES, lease_expires_at__lt=timezone.now()
    ).order_by("lease_expires_at")
    results = []
    for attempt_id in stuck.values_list("id", flat=True)[:limit]:
        result = reconcile_attempt(attempt_id=attempt_id)
        if result is not None:
            results.append(result)
    return results
