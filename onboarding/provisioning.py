"""Paid phone-number provisioning, the request path: one charge and one number per org, under
retries and races. What happens when the process driving an attempt dies is reconciler.py's.

`provision_number` runs the flow:
 1. one transaction (wallet locked first): refuse if the org already has its number or an
    attempt in flight, hold the price, record the attempt. The database allows one active
    attempt per org and one attempt per (org, idempotency key);
 2. outside any transaction, one provider step at a time, each result written the moment it
    returns: the org's subaccount (once per org), search + buy (the number's FriendlyName names
    the attempt), the Vapi import;
 3. one transaction: store the managed number and mark the attempt succeeded (the charge stays).
On a failure after step 1 it undoes what was done in reverse (Vapi import, Twilio number, with
bounded retries), refunds the hold and marks the attempt failed, all before answering.

Whoever drives an attempt holds its lease, renewed at every step (`record_step`); the
reconciler takes over an attempt only after its lease lapses, and reuses `settle` and
`compensate` to end it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TypeVar

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from billing.services import InsufficientFunds, hold_for_provisioning, lock_wallet, release_hold
from onboarding import telephony
from onboarding.models import (
    ACTIVE_ATTEMPT_STATES,
    AttemptState,
    ManagedPhoneNumber,
    ProvisioningAttempt,
    TwilioSubaccount,
    add_months,
)
from onboarding.telephony import (
    NoNumbersAvailable,
    NotConfigured,
    NumberNoLongerAvailable,
    OutcomeUnknown,
    ProviderUnavailable,
    RegulatoryRequirement,
    TelephonyError,
)
from voice import vapi
from voxanne.errors import ApiError, Conflict, IdempotencyKeyReused, Unprocessable
from voxanne.models import Organization

logger = logging.getLogger(__name__)

# What a provider step can raise: Twilio's errors and Vapi's, each mapped at its boundary.
PROVIDER_ERRORS = (TelephonyError, vapi.VapiError)
# Worth retrying now: the provider answered "not now" (5xx, 429), not "no".
TRANSIENT_ERRORS = (ProviderUnavailable, vapi.VapiUnavailable)

UNDO_TRIES = 3
UNDO_FIRST_DELAY_SECONDS = 0.1


# --- What callers see ----------------------------------------------------------------------


class ProvisioningUnavailable(ApiError):
    status_code = 500
    default_message = "Phone provisioning not available. Please contact support."
    code = "provisioning_unavailable"


class ProvisioningInProgress(Conflict):
    default_message = (
        "Your phone number is already being set up. Please try again in a few seconds."
    )
    code = "provisioning_in_progress"


class NoNumbersInArea(Unprocessable):
    default_message = "No phone numbers are available in that area code. Please try another one."
    code = "no_numbers_available"


class RegulatoryBundleRequired(Unprocessable):
    default_message = (
        "Numbers in this country need an address or regulatory bundle first. "
        "Please contact support."
    )
    code = "regulatory_bundle_required"


class ProvisioningFailed(ApiError):
    status_code = 503
    default_message = (
        "We could not set up your phone number. Your wallet has been refunded. Please try again."
    )
    code = "provisioning_failed"


class StoredFailure(ApiError):
    """The first answer to this idempotency key was an error: the same error again."""

    def __init__(self, *, status: int, message: str, code: str):
        super().__init__(message, code=code)
        self.status_code = status


INSUFFICIENT_BALANCE_MESSAGE = "Insufficient balance for phone number. Please top up your wallet."


@dataclass(frozen=True)
class Provisioned:
    phone_number: str
    already_provisioned: bool = False

    def body(self) -> dict:
        body = {"success": True, "phoneNumber": self.phone_number}
        if self.already_provisioned:
            body["alreadyProvisioned"] = True
        return body


class LeaseLost(Exception):
    """Someone else (the reconciler) now drives this attempt."""


_T = TypeVar("_T")


# --- Reads ---------------------------------------------------------------------------------


def active_number_for(org: Organization | str) -> ManagedPhoneNumber | None:
    return (
        ManagedPhoneNumber.objects.for_org(org)
        .filter(status=ManagedPhoneNumber.Status.ACTIVE)
        .first()
    )


def _fingerprint(area_code: str | None) -> str:
    canonical = json.dumps({"area_code": area_code or None}, sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _derived_key(org: Organization) -> str:
    """Without an Idempotency-Key: one key per org per attempt, stable while one is in flight."""
    finished = (
        ProvisioningAttempt.objects.for_org(org).exclude(state__in=ACTIVE_ATTEMPT_STATES).count()
    )
    return f"auto-{finished + 1}"


def lease_until(now: datetime | None = None) -> datetime:
    return (now or timezone.now()) + timedelta(seconds=settings.PROVISIONING_STUCK_AFTER_SECONDS)


def _stored_answer(attempt: ProvisioningAttempt) -> Provisioned:
    body = attempt.response_body or {}
    if attempt.response_status == 200:
        return Provisioned(body["phoneNumber"], bool(body.get("alreadyProvisioned")))
    raise StoredFailure(
        status=attempt.response_status or 503,
        message=body.get("error", ProvisioningFailed.default_message),
        code=body.get("code", ProvisioningFailed.code),
    )


def _replay_for_key(org: Organization, key: str, fingerprint: str) -> Provisioned | None:
    attempt = ProvisioningAttempt.objects.for_org(org).filter(idempotency_key=key).first()
    if attempt is None:
        return None
    if attempt.request_fingerprint != fingerprint:
        raise IdempotencyKeyReused()
    if attempt.state in ACTIVE_ATTEMPT_STATES:
        raise ProvisioningInProgress()
    return _stored_answer(attempt)


# --- The request path ----------------------------------------------------------------------


def provision_number(
    *, org: Organization, area_code: str | None = None, idempotency_key: str | None = None
) -> Provisioned:
    """Charge 1000 pence once and give the org its phone number.

    Returns the new number, the org's existing one (no charge), or the stored first answer
    for a repeated Idempotency-Key. Raises InsufficientFunds (402, before any provider call),
    ProvisioningUnavailable (500, before touching the wallet), ProvisioningInProgress (409),
    IdempotencyKeyReused (422), NoNumbersInArea / RegulatoryBundleRequired (422) or
    ProvisioningFailed (503); on every error after the hold the money is back first.
    """
    fingerprint = _fingerprint(area_code)
    if idempotency_key:
        replay = _replay_for_key(org, idempotency_key, fingerprint)
        if replay is not None:
            return replay
    existing = active_number_for(org)
    if existing is not None:
        return Provisioned(existing.phone_number, already_provisioned=True)
    if not (telephony.is_configured() and vapi.is_configured()):
        logger.error("phone provisioning requested but Twilio/Vapi credentials are not set")
        raise ProvisioningUnavailable()

    key = idempotency_key or _derived_key(org)
    token = uuid.uuid4()
    try:
        started = _begin(
            org=org, key=key, fingerprint=fingerprint, area_code=area_code, token=token
        )
    except IntegrityError:
        # Lost a race to the constraints: same key, or another attempt went active.
        if idempotency_key:
            replay = _replay_for_key(org, idempotency_key, fingerprint)
            if replay is not None:
                return replay
        raise ProvisioningInProgress() from None
    if isinstance(started, Provisioned):
        return started
    return _drive(started, token)


def _begin(
    *, org: Organization, key: str, fingerprint: str, area_code: str | None, token: uuid.UUID
) -> ProvisioningAttempt | Provisioned:
    try:
        with transaction.atomic(durable=True):
            wallet = lock_wallet(org)  # serializes this org's provisioning decisions
            existing = active_number_for(org)
            if existing is not None:
                return Provisioned(existing.phone_number, already_provisioned=True)
            in_flight = ProvisioningAttempt.objects.for_org(org).filter(
                state__in=ACTIVE_ATTEMPT_STATES
            )
            if in_flight.exists():
                raise ProvisioningInProgress()
            attempt_id = uuid.uuid4()
            hold = hold_for_provisioning(
                wallet=wallet,
                idempotency_key=f"provision:{attempt_id}",
                description="Phone number",
            ).entry
            return ProvisioningAttempt.objects.create(
                id=attempt_id,
                org=org,
                idempotency_key=key,
                request_fingerprint=fingerprint,
                area_code=area_code or "",
                hold=hold,
                lease_token=token,
                lease_expires_at=lease_until(),
            )
    except InsufficientFunds:
        raise InsufficientFunds(INSUFFICIENT_BALANCE_MESSAGE) from None


def record_step(attempt: ProvisioningAttempt, token: uuid.UUID, **fields) -> None:
    """Write a step's result and renew the lease, if we still hold it."""
    now = timezone.now()
    updated = ProvisioningAttempt.objects.filter(
        pk=attempt.pk, lease_token=token, state__in=ACTIVE_ATTEMPT_STATES
    ).update(**fields, lease_expires_at=lease_until(now), updated_at=now)
    if updated != 1:
        raise LeaseLost()
    for name, value in fields.items():
        setattr(attempt, name, value)


def _drive(attempt: ProvisioningAttempt, token: uuid.UUID) -> Provisioned:
    try:
        subaccount = _ensure_subaccount(attempt, token)
        _buy(attempt, token, subaccount)
        _import(attempt, token, subaccount)
        return settle(attempt, token)
    except LeaseLost:
        logger.warning("provisioning attempt %s was taken over by the reconciler", attempt.pk)
        raise ProvisioningInProgress() from None
    except PROVIDER_ERRORS as exc:
        error = _api_error_for(exc)
        # Without an answer the provider may still finish the step: refund now, and leave the
        # attempt for the reconciler to look for (and undo) what completes late.
        recheck = isinstance(exc, (OutcomeUnknown, vapi.VapiOutcomeUnknown))
        compensate(attempt, token, error=error, detail=exc.detail, recheck_later=recheck)
        raise error from None
    except Exception as exc:
        logger.exception("provisioning attempt %s failed unexpectedly", attempt.pk)
        error = ProvisioningFailed()
        try:
            compensate(attempt, token, error=error, detail=f"{type(exc).__name__}: {exc}")
        except Exception:
            # The lease will lapse and the reconciler will finish the undo and the refund.
            logger.exception("could not undo provisioning attempt %s now", attempt.pk)
        raise error from None


def _api_error_for(exc: TelephonyError | vapi.VapiError) -> ApiError:
    if isinstance(exc, NoNumbersAvailable):
        return NoNumbersInArea()
    if isinstance(exc, RegulatoryRequirement):
        return RegulatoryBundleRequired()
    if isinstance(exc, (NotConfigured, vapi.VapiNotConfigured)):
        logger.critical(
            "ALERT: a provider refused our credentials (Twilio 20003 or Vapi 401): %s",
            exc.detail,
        )
        return ProvisioningUnavailable()
    return ProvisioningFailed()


def subaccount_name(org_id: uuid.UUID) -> str:
    """The org's Twilio subaccount FriendlyName: finds it again after a crash (as numbers are
    found by theirs), so a process that dies before recording its subaccount orphans none."""
    return f"voxanne-org-{org_id.hex}"


def store_subaccount(
    attempt: ProvisioningAttempt, token: uuid.UUID, found: telephony.Subaccount
) -> TwilioSubaccount:
    with transaction.atomic(durable=True):
        subaccount = TwilioSubaccount.objects.create(
            org_id=attempt.org_id,
            account_sid=found.sid,
            friendly_name=found.friendly_name,
            auth_token_encrypted=TwilioSubaccount.encrypt(found.auth_token),
        )
        record_step(attempt, token, subaccount_sid=found.sid, subaccount_at=timezone.now())
    return subaccount


def unrecorded_subaccount(org_id: uuid.UUID) -> telephony.Subaccount | None:
    """The org's subaccount at Twilio that a dead process created but never recorded."""
    found = telephony.find_subaccounts_named(friendly_name=subaccount_name(org_id))
    if len(found) > 1:  # never expected: one active attempt per org creates at most one
        logger.warning("org %s has %d unrecorded Twilio subaccounts", org_id, len(found))
    return found[0] if found else None


def _ensure_subaccount(attempt: ProvisioningAttempt, token: uuid.UUID) -> TwilioSubaccount:
    subaccount = TwilioSubaccount.objects.for_org(attempt.org_id).first()
    if subaccount is not None:
        record_step(
            attempt, token, subaccount_sid=subaccount.account_sid, subaccount_at=timezone.now()
        )
        return subaccount
    # Only an earlier attempt can have left one behind: the org's first skips the lookup.
    earlier = ProvisioningAttempt.objects.filter(org_id=attempt.org_id).exclude(pk=attempt.pk)
    found = unrecorded_subaccount(attempt.org_id) if earlier.exists() else None
    if found is None:
        found = telephony.create_subaccount(friendly_name=subaccount_name(attempt.org_id))
    return store_subaccount(attempt, token, found)


def _buy(attempt: ProvisioningAttempt, token: uuid.UUID, subaccount: TwilioSubaccount) -> None:
    def search(exclude: str = "") -> str:
        numbers = telephony.search_local_numbers(
            subaccount_sid=subaccount.account_sid,
            country=settings.PROVISION_COUNTRY,
            area_code=attempt.area_code or None,
        )
        fresh = [n for n in numbers if n != exclude]
        if not fresh:
            raise NoNumbersAvailable("only the number that was just taken came back")
        return fresh[0]

    def buy(number: str) -> telephony.PurchasedNumber:
        return telephony.buy_number(
            subaccount_sid=subaccount.account_sid,
            phone_number=number,
            friendly_name=attempt.number_friendly_name,
        )

    candidate = search()
    try:
        bought = buy(candidate)
    except NumberNoLongerAvailable:
        logger.info("number %s was taken meanwhile; searching again once", candidate)
        bought = buy(search(exclude=candidate))
    record_purchase(attempt, token, bought)


def record_purchase(
    attempt: ProvisioningAttempt, token: uuid.UUID, number: telephony.PurchasedNumber
) -> None:
    record_step(
        attempt,
        token,
        twilio_number_sid=number.sid,
        phone_number=number.phone_number,
        purchased_at=timezone.now(),
    )


def _import(attempt: ProvisioningAttempt, token: uuid.UUID, subaccount: TwilioSubaccount) -> None:
    phone_id = vapi.import_twilio_number(
        phone_number=attempt.phone_number,
        twilio_account_sid=subaccount.account_sid,
        twilio_auth_token=subaccount.auth_token,
        name=f"vx-{attempt.id.hex}",  # Vapi's names are at most 40 characters
        server=vapi.webhook_server(),  # no assistant: every inbound call asks our webhook
    )
    record_import(attempt, token, phone_id)


def record_import(attempt: ProvisioningAttempt, token: uuid.UUID, phone_id: str) -> None:
    record_step(attempt, token, vapi_phone_id=phone_id, imported_at=timezone.now())


def settle(attempt: ProvisioningAttempt, token: uuid.UUID) -> Provisioned:
    """Store the managed number and keep the charge, in one transaction."""
    with transaction.atomic(durable=True):
        lock_wallet(attempt.org_id)
        locked = ProvisioningAttempt.objects.select_for_update().get(pk=attempt.pk)
        if locked.lease_token != token or locked.state != AttemptState.IN_PROGRESS:
            raise LeaseLost()
        now = timezone.now()
        ManagedPhoneNumber.objects.create(
            org_id=locked.org_id,
            attempt=locked,
            phone_number=locked.phone_number,
            twilio_number_sid=locked.twilio_number_sid,
            subaccount_sid=locked.subaccount_sid,
            vapi_phone_id=locked.vapi_phone_id,
            rental_started_at=now,  # the provisioning charge pays the first month
            paid_until=add_months(now, 1),
        )
        answer = Provisioned(locked.phone_number)
        locked.state = AttemptState.SUCCEEDED
        locked.finished_at = now
        locked.lease_token = None
        locked.lease_expires_at = now
        locked.response_status = 200
        locked.response_body = answer.body()
        locked.save()
    logger.info("provisioned %s for org %s", locked.phone_number, locked.org_id)
    return answer


# --- Undo ----------------------------------------------------------------------------------


def _with_retries(action: Callable[[], _T], *, what: str) -> _T:
    delay = UNDO_FIRST_DELAY_SECONDS
    for attempt_number in range(1, UNDO_TRIES + 1):
        try:
            return action()
        except TRANSIENT_ERRORS:
            if attempt_number == UNDO_TRIES:
                raise
            logger.warning("%s failed (try %d); retrying in %.1fs", what, attempt_number, delay)
            time.sleep(delay)
            delay *= 2
    raise AssertionError("unreachable")


def _undo_provider_side(attempt: ProvisioningAttempt) -> bool:
    """Delete the Vapi import, then release the Twilio number. True when nothing is left."""
    return release_at_providers(attempt, what=f"provisioning attempt {attempt.pk}")


def release_at_providers(
    held: ProvisioningAttempt | ManagedPhoneNumber, *, what: str | None = None
) -> bool:
    """Delete a number's Vapi import, then release it at Twilio, each with bounded retries
    (already gone counts as done). The undo of a failed provisioning, and the release of a
    number whose rental ran out. True when nothing is left; False (logged) to retry later."""
    try:
        if held.vapi_phone_id:
            _with_retries(
                lambda: vapi.delete_import(phone_id=held.vapi_phone_id), what="vapi delete"
            )
        if held.twilio_number_sid:
            _with_retries(
                lambda: telephony.release_number(
                    subaccount_sid=held.subaccount_sid, number_sid=held.twilio_number_sid
                ),
                what="twilio release",
            )
    except PROVIDER_ERRORS as exc:
        logger.error("undo of %s incomplete: %s", what or held, exc.detail)
        return False
    return True


def compensate(
    attempt: ProvisioningAttempt,
    token: uuid.UUID,
    *,
    error: ApiError,
    detail: str,
    recheck_later: bool = False,
) -> None:
    """Undo the provider side, refund the hold, and store the error as this key's answer.

    The refund happens even when the provider undo does not finish now: the clinic never pays
    for nothing. The attempt then stays active ('compensating', lease lapsed) until the
    reconciler has released what we still own (or, with `recheck_later`, has looked again for
    a step the provider completed after we stopped waiting).
    """
    fields = {"state": AttemptState.COMPENSATING}
    if not attempt.error_code:
        fields.update(
            error_code=error.code,
            error_detail=detail[:4000],
            response_status=error.status_code,
            response_body={"error": error.message, "code": error.code},
        )
    record_step(attempt, token, **fields)
    undone = _undo_provider_side(attempt) and not recheck_later
    with transaction.atomic(durable=True):
        release_hold(hold=attempt.hold, reason="Phone number could not be set up")  # wallet first
        now = timezone.now()
        if undone:
            finished = {"state": AttemptState.FAILED, "finished_at": now, "lease_token": None}
        else:
            finished = {"lease_token": None}
        updated = ProvisioningAttempt.objects.filter(pk=attempt.pk, lease_token=token).update(
            **finished, refunded_at=attempt.refunded_at or now, lease_expires_at=now, updated_at=now
        )
        if updated != 1:
            raise LeaseLost()
    logger.info(
        "provisioning attempt %s refunded (%s)%s",
        attempt.pk,
        error.code,
        "" if undone else "; provider undo left to the reconciler",
    )
