"""Money in through Stripe Checkout: top-ups, their webhooks, refunds, disputes, receipts.

One fulfilment function, `fulfil_session`, is called by the webhook, the clinic's return-page
check and the reconciler alike: whatever the deliveries, polls and races, a Checkout Session
gets one `topup` ledger entry, keyed `topup:<session id>`, for Stripe's `amount_total`, and
only when `payment_status == "paid"`. A top-up's status only moves forward
(TOPUP_STATUS_RANK), but for one case: a refund that fails afterwards was never a refund.
Money moves through billing/services.py; this module writes the top-up, dispute and
webhook-inbox rows. No Stripe call ever runs inside a transaction.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q, Sum
from django.utils import timezone

from billing import inbox, recharge, services
from billing import stripe as payments
from billing.inbox import Handled
from billing.models import (
    TOPUP_STATUS_RANK,
    Dispute,
    DisputeStatus,
    EntryType,
    LedgerEntry,
    TopUp,
    TopUpStatus,
    WebhookEvent,
    format_pence,
)
from billing.signals import topup_paid
from voxanne import db
from voxanne.emails import templated_email
from voxanne.errors import ApiError, ServiceUnavailable
from voxanne.models import Organization, User
from voxanne.tenancy import system_context

logger = logging.getLogger(__name__)

RECONCILE_WINDOW = timedelta(hours=72)
# Metadata key of a refund we made ourselves (admin "refund to card"): the idempotency key of
# the debit already written for it, so the charge.refunded that follows debits nothing more.
REFUND_DEBITED_AS = "voxanne_debit_key"
PENDING_EXPIRES_AFTER = timedelta(days=1)
CURRENCY = "gbp"


class TopUpAmountInvalid(ApiError):
    code = "invalid_amount"


class TopUpsNotConfigured(ApiError):
    status_code = 500
    default_message = "Top-ups are not available right now. Please contact support."
    code = "topups_unavailable"


class PaymentProviderUnreachable(ServiceUnavailable):
    default_message = "We could not reach our payment provider. Please try again in a minute."
    code = "payment_provider_unavailable"


class TopUpKeyReused(ApiError):
    status_code = 422
    default_message = "This Idempotency-Key was already used for a top-up of another amount."
    code = "idempotency_key_reused"


def topup_key(session_id: str) -> str:
    return f"topup:{session_id}"


def validate_amount(amount_pence: object) -> int:
    """The amount as an int within the configured bounds, or TopUpAmountInvalid."""
    low, high = settings.WALLET_MIN_TOPUP_PENCE, settings.WALLET_MAX_TOPUP_PENCE
    if isinstance(amount_pence, bool) or not isinstance(amount_pence, int):
        raise TopUpAmountInvalid("amount_pence must be a whole number of pence.")
    if not low <= amount_pence <= high:
        raise TopUpAmountInvalid(
            f"A top-up must be between {format_pence(low)} and {format_pence(high)}."
        )
    return amount_pence


# --- Starting a top-up ---------------------------------------------------------------------


def _urls(topup: TopUp) -> tuple[str, str]:
    def fill(template: str) -> str:
        return template.replace("{TOPUP_ID}", str(topup.pk))

    return fill(settings.TOPUP_SUCCESS_URL), fill(settings.TOPUP_CANCEL_URL)


def start_topup(
    *, org: Organization, amount_pence: object, idempotency_key: str | None = None
) -> TopUp:
    """A pending top-up with its Stripe Checkout URL.

    The same Idempotency-Key returns the same top-up (and Stripe the same session: its key is
    derived from the top-up row). Raises TopUpAmountInvalid (400), TopUpKeyReused (422),
    TopUpsNotConfigured (500, nothing written), PaymentProviderUnreachable (503: the pending
    row stays, and a retry with the same key finishes it).
    """
    amount = validate_amount(amount_pence)
    if not payments.is_configured():
        logger.error("a top-up was requested but STRIPE_SECRET_KEY is not set")
        raise TopUpsNotConfigured()
    key = (idempotency_key or "").strip()
    if len(key) > 255:
        raise TopUpAmountInvalid("Idempotency-Key must be at most 255 characters.")
    topup = _pending_topup(org=org, amount=amount, key=key)
    if topup.stripe_session_id or topup.status != TopUpStatus.PENDING:
        return topup
    success_url, cancel_url = _urls(topup)
    try:
        session = payments.create_checkout_session(
            amount_pence=topup.amount_pence,
            org_id=str(org.pk),
            topup_id=str(topup.pk),
            success_url=success_url,
            cancel_url=cancel_url,
            idempotency_key=f"checkout:{topup.pk}",
            customer_email=getattr(org.owner, "email", None),
        )
    except payments.PaymentProviderUnavailable:
        raise PaymentProviderUnreachable() from None
    except payments.PaymentProviderError as exc:
        logger.error("stripe refused a checkout session: %s", exc.detail, extra={"topup": topup.pk})
        TopUp.objects.filter(pk=topup.pk, status=TopUpStatus.PENDING).update(
            status=TopUpStatus.FAILED, updated_at=timezone.now()
        )
        raise TopUpsNotConfigured() from None
    TopUp.objects.filter(pk=topup.pk, stripe_session_id__isnull=True).update(
        stripe_session_id=session.id, checkout_url=session.url or "", updated_at=timezone.now()
    )
    topup.refresh_from_db()
    return topup


def _pending_topup(*, org: Organization, amount: int, key: str) -> TopUp:
    if key:
        existing = TopUp.objects.for_org(org).filter(idempotency_key=key).first()
        if existing is not None:
            if existing.amount_pence != amount:
                raise TopUpKeyReused()
            return existing
    try:
        with transaction.atomic():
            return TopUp.objects.create(org=org, amount_pence=amount, idempotency_key=key)
    except IntegrityError:  # a concurrent request with the same key won
        existing = TopUp.objects.for_org(org).get(idempotency_key=key)
        if existing.amount_pence != amount:
            raise TopUpKeyReused() from None
        return existing


# --- Fulfilment: the one function ----------------------------------------------------------


@dataclass(frozen=True)
class Fulfilment:
    topup: TopUp | None
    credited: bool  # this call wrote the credit
    note: str = ""


def _topup_for_session(session: payments.CheckoutSession) -> TopUp | None:
    # voxanne/db.py's reads and writes here and below: a delivery's hot rows.
    topup = db.get(TopUp, stripe_session_id=session.id)
    if topup is None and session.topup_id:
        # The session was created but its id never stored (the answer was lost).
        try:
            topup = db.get(TopUp, pk=uuid.UUID(session.topup_id))
        except ValueError:
            return None
        if topup is not None and topup.stripe_session_id not in (None, session.id):
            return None
    if topup is not None and session.client_reference_id not in (None, str(topup.org_id)):
        return None
    return topup


def _advance(topup: TopUp, status: str) -> bool:
    """Move the (locked) top-up to `status` if that is forward; says whether it moved."""
    if TOPUP_STATUS_RANK[status] <= TOPUP_STATUS_RANK[topup.status]:
        return False
    topup.status = status
    return True


def fulfil_session(session: payments.CheckoutSession, *, failed: bool = False) -> Fulfilment:
    """Bring our books in line with what Stripe says of a Checkout Session.

    Paid: one `topup` entry for `amount_total` (whoever calls first; everyone else replays
    it), status paid and `topup_paid` sent; `send_receipts` (beat, every minute) mails the
    receipt. Expired (or `failed`, for async_payment_failed): the status moves there unless it
    is already further. Joins the caller's transaction (the webhook's inbox row) or opens its
    own.
    """
    with transaction.atomic(savepoint=False):
        found = _topup_for_session(session)
        if found is None:
            return Fulfilment(None, False, f"no top-up for checkout session {session.id}")
        paid = session.payment_status == "paid"
        if paid and ((session.currency or "").lower() != CURRENCY or not session.amount_total):
            logger.error(
                "a paid checkout session is not in %s; not credited",
                CURRENCY,
                extra={"session": session.id, "currency": session.currency},
            )
            return Fulfilment(found, False, f"paid in {session.currency}, not credited")
        posting = None
        if paid:  # the posting locks the wallet: wallet first, always
            posting = services.record_topup(
                org=found.org_id,
                amount_pence=session.amount_total,
                idempotency_key=topup_key(session.id),
                description=f"Top-up by card (Stripe {session.id})",
            )
        else:
            services.lock_wallet(found.org_id)
        topup = db.get(TopUp, pk=found.pk, lock=True)
        fields = {"updated_at"}
        if topup.stripe_session_id is None:
            topup.stripe_session_id = session.id
            fields.add("stripe_session_id")
        if session.payment_intent_id and not topup.payment_intent_id:
            topup.payment_intent_id = session.payment_intent_id
            fields.add("payment_intent_id")
        if posting is None:
            status = TopUpStatus.FAILED if failed else None
            if session.status == "expired":
                status = TopUpStatus.EXPIRED
            if status and _advance(topup, status):
                fields.add("status")
            db.update(topup, fields)
            return Fulfilment(topup, False, f"session {session.status}, {session.payment_status}")
        if session.amount_total != topup.amount_pence:
            logger.warning(
                "stripe took another amount than the top-up asked for; crediting Stripe's",
                extra={
                    "topup": str(topup.pk),
                    "asked": topup.amount_pence,
                    "amount_total": session.amount_total,
                },
            )
        if _advance(topup, TopUpStatus.PAID) or topup.paid_at is None:
            topup.paid_at = topup.paid_at or timezone.now()
            topup.paid_pence = session.amount_total
            fields |= {"status", "paid_at", "paid_pence"}
        db.update(topup, fields)
        if posting.created:
            topup_paid.send(sender=TopUp, topup=topup)
        return Fulfilment(topup, posting.created)


# --- The return page's check ---------------------------------------------------------------


def check_topup(topup: TopUp) -> TopUp:
    """While a top-up is pending, ask Stripe about its session and fulfil a paid one (a lost
    webhook must not leave a paid clinic waiting). Stripe unreachable: the top-up as it is."""
    if topup.status != TopUpStatus.PENDING or not topup.stripe_session_id:
        return topup
    try:
        session = payments.retrieve_checkout_session(topup.stripe_session_id)
    except payments.PaymentProviderError as exc:
        logger.warning("could not check a pending top-up: %s", exc.detail)
        return topup
    with system_context("top-up check"):
        result = fulfil_session(session)
    return result.topup or topup


# --- The webhook ---------------------------------------------------------------------------


def handle_stripe_webhook(payload: bytes, signature: str | None) -> Handled:
    """Verify, store and apply one Stripe event: the inbox row and its effect commit together.

    Raises payments.BadSignature (nothing written), payments.NotConfigured, or
    PaymentProviderUnreachable / a database error (nothing written: Stripe retries). Runs in
    the system context, which TenantMiddleware opens for the webhook's path.
    """
    event = payments.verify_webhook(payload, signature)
    fetched = None
    if event["type"] in FETCH_FIRST:
        if _seen(event):  # a redelivery: no need to ask Stripe again
            return Handled(event["id"], "duplicate")
        fetched = _fetch_before(event)
    return _process(event, fetched)


# Events whose effect needs Stripe's current state, fetched before the transaction.
FETCH_FIRST = frozenset({"charge.refunded"})


def _seen(event: dict) -> bool:
    return inbox.already_received(provider=WebhookEvent.Provider.STRIPE, event_id=event["id"])


def _fetch_before(event: dict) -> object:
    """What an event needs from Stripe, fetched before the transaction (never inside)."""
    charge_id = event["data"]["object"]["id"]
    try:
        return payments.list_refunds(charge_id=charge_id)
    except payments.PaymentProviderError as exc:
        raise PaymentProviderUnreachable() from exc


def _process(event: dict, fetched: object) -> Handled:
    return inbox.receive(
        provider=WebhookEvent.Provider.STRIPE,
        event_id=event["id"],
        type=event["type"],
        payload=event,
        apply=lambda: _apply(event, fetched),
    )


def _apply(event: dict, fetched: object) -> str:
    """Apply one event inside the inbox transaction. Returns why it was ignored, or ""."""
    kind, obj = event["type"], event["data"]["object"]
    if kind in ("checkout.session.completed", "checkout.session.async_payment_succeeded"):
        return _session_note(fulfil_session(payments.session_from_event(obj)))
    if kind == "checkout.session.async_payment_failed":
        return _session_note(fulfil_session(payments.session_from_event(obj), failed=True))
    if kind == "checkout.session.expired":
        return _session_note(fulfil_session(payments.session_from_event(obj)))
    if kind == "payment_intent.succeeded":  # one credit per PaymentIntent: recharges only
        return recharge.fulfil_payment_intent(payments.intent_from_event(obj)).note
    if kind == "payment_intent.payment_failed":
        return recharge.apply_payment_failed(payments.intent_from_event(obj))
    if kind == "charge.refunded":
        return _apply_refunds(obj, fetched)
    if kind in REFUND_UPDATES:
        return _apply_failed_refund(obj)
    if kind in ("charge.dispute.created", "charge.dispute.funds_withdrawn"):
        return _open_dispute(obj)
    if kind == "charge.dispute.closed":
        return _close_dispute(obj)
    return f"event type {kind} is not handled"


def _session_note(result: Fulfilment) -> str:
    return result.note if result.topup is None else ""


def _topup_for_charge(charge_id: str | None, payment_intent_id: str | None) -> TopUp | None:
    match = Q(pk__in=[])
    if charge_id:
        match |= Q(charge_id=charge_id)
    if payment_intent_id:
        match |= Q(payment_intent_id=payment_intent_id)
    return TopUp.objects.filter(match).first()


def _locked_topup(charge_id: str | None, payment_intent_id: str | None) -> TopUp | None:
    found = _topup_for_charge(charge_id, payment_intent_id)
    if found is None:
        return None
    services.lock_wallet(found.org_id)
    topup = TopUp.objects.select_for_update().get(pk=found.pk)
    if charge_id and not topup.charge_id:
        topup.charge_id = charge_id
    return topup


def _apply_refunds(charge: dict, refunds: list[payments.Refund]) -> str:
    """Debit each refund of the charge once (by refund id), wherever it was made."""
    topup = _locked_topup(charge.get("id"), charge.get("payment_intent"))
    if topup is None:
        return f"no top-up for charge {charge.get('id')}"
    gone = [r for r in refunds if r.status in ("succeeded", "pending")]
    for refund in gone:
        if _debited_by_support(topup.org_id, refund.metadata.get(REFUND_DEBITED_AS)):
            continue  # made by our own admin, which wrote its debit before asking Stripe
        services.record_money_gone(
            org=topup.org_id,
            amount_pence=refund.amount,
            type=EntryType.CARD_REFUND,
            idempotency_key=f"refund:{refund.id}",
            description=f"Refund to card (Stripe {refund.id})",
        )
    refunded = sum(r.amount for r in gone)
    topup.refunded_pence = max(topup.refunded_pence, refunded)
    paid = topup.paid_pence or topup.amount_pence
    if topup.refunded_pence:
        full = topup.refunded_pence >= paid
        _advance(topup, TopUpStatus.REFUNDED if full else TopUpStatus.PARTIALLY_REFUNDED)
    topup.save(update_fields=["charge_id", "refunded_pence", "status", "updated_at"])
    return ""


# What Stripe sends when a refund it had accepted fails later (a closed card, say): the same
# Refund object, status "failed", under any of these names (an endpoint may subscribe to any).
REFUND_UPDATES = frozenset({"refund.failed", "refund.updated", "charge.refund.updated"})


def _apply_failed_refund(refund: dict) -> str:
    """A refund that failed: the money came back to our Stripe account, not to the card, so the
    wallet gets back the debit that paid for it (`refund:<id>` from charge.refunded, or our
    admin's, named in the metadata), once whatever the deliveries, and the top-up counts it as
    refunded no longer. Any other status: ignored."""
    if refund.get("status") != "failed":
        return f"refund {refund.get('id')} is {refund.get('status')}, not failed"
    topup = _locked_topup(refund.get("charge"), refund.get("payment_intent"))
    if topup is None:
        return f"no top-up for refunded charge {refund.get('charge')}"
    keys = [f"refund:{refund['id']}", (refund.get("metadata") or {}).get(REFUND_DEBITED_AS)]
    debit = LedgerEntry.objects.filter(
        org_id=topup.org_id, type=EntryType.CARD_REFUND, idempotency_key__in=[k for k in keys if k]
    ).first()
    reason = f"Stripe could not refund the card ({refund.get('failure_reason') or 'failed'})"
    restored = debit and services.restore_failed_card_refund(debit=debit, reason=reason[:500])
    if restored and restored.created:
        # The one move back a top-up's status makes: what failed was never refunded.
        topup.refunded_pence = max(0, topup.refunded_pence - refund["amount"])
        if topup.status in (TopUpStatus.REFUNDED, TopUpStatus.PARTIALLY_REFUNDED):
            refunded = topup.refunded_pence > 0
            topup.status = TopUpStatus.PARTIALLY_REFUNDED if refunded else TopUpStatus.PAID
        logger.warning(
            "a refund to the card failed at Stripe: its debit is undone",
            extra={"topup": str(topup.pk), "refund": refund["id"], "debit": str(debit.pk)},
        )
    topup.save(update_fields=["charge_id", "refunded_pence", "status", "updated_at"])
    return "" if debit else f"refund {refund['id']} failed before anything was debited for it"


def _debited_by_support(org_id, debit_key: str | None) -> bool:
    """Whether a refund's metadata names a debit of this org that still stands. Metadata can
    be typed in Stripe's dashboard, and a debit we reversed (Stripe refused, we thought) no
    longer pays for the refund: then the refund is debited as any other."""
    if not debit_key:
        return False
    return LedgerEntry.objects.filter(
        org_id=org_id, idempotency_key=debit_key, type=EntryType.CARD_REFUND, reversals__isnull=True
    ).exists()


def _open_dispute(obj: dict) -> str:
    topup = _locked_topup(obj.get("charge"), obj.get("payment_intent"))
    if topup is None:
        return f"no top-up for disputed charge {obj.get('charge')}"
    topup.save(update_fields=["charge_id", "updated_at"])
    dispute, created = Dispute.objects.get_or_create(
        stripe_dispute_id=obj["id"],
        defaults={
            "org_id": topup.org_id,
            "topup": topup,
            "amount_pence": obj["amount"],
            "status": DisputeStatus.OPEN,
        },
    )
    if created:  # a dispute already closed (events out of order) freezes nothing
        services.freeze_wallet(org=topup.org_id, reason=f"Payment dispute {obj['id']} is open")
        logger.error(
            "payment dispute opened: wallet frozen",
            extra={"org_id": str(topup.org_id), "dispute": obj["id"]},
        )
    return ""


def _close_dispute(obj: dict) -> str:
    topup = _locked_topup(obj.get("charge"), obj.get("payment_intent"))
    if topup is None:
        return f"no top-up for disputed charge {obj.get('charge')}"
    topup.save(update_fields=["charge_id", "updated_at"])
    won = obj.get("status") == "won"
    dispute, _ = Dispute.objects.select_for_update().get_or_create(
        stripe_dispute_id=obj["id"],
        defaults={
            "org_id": topup.org_id,
            "topup": topup,
            "amount_pence": obj["amount"],
            "status": DisputeStatus.OPEN,
        },
    )
    if dispute.status != DisputeStatus.OPEN:
        return ""
    dispute.status = DisputeStatus.WON if won else DisputeStatus.LOST
    dispute.closed_at = timezone.now()
    dispute.save(update_fields=["status", "closed_at", "updated_at"])
    if not won:
        # The money went back to the card holder: recorded, and the wallet stays frozen
        # until support decides.
        services.record_money_gone(
            org=topup.org_id,
            amount_pence=dispute.amount_pence,
            type=EntryType.CHARGEBACK,
            idempotency_key=f"chargeback:{dispute.stripe_dispute_id}",
            description=f"Chargeback (Stripe {dispute.stripe_dispute_id})",
        )
        services.freeze_wallet(org=topup.org_id, reason=f"Payment dispute {obj['id']} was lost")
        logger.error("payment dispute lost", extra={"dispute": obj["id"]})
        return ""
    still_open = Dispute.objects.filter(org_id=topup.org_id, status=DisputeStatus.OPEN).exists()
    if not still_open:
        services.unfreeze_wallet(org=topup.org_id)
    return ""


# --- Support's refund to the card ----------------------------------------------------------

REFUNDABLE_STATUSES = (TopUpStatus.PAID, TopUpStatus.PARTIALLY_REFUNDED)


class CardRefundRefused(ApiError):
    default_message = "This top-up cannot be refunded to the card."
    code = "card_refund_refused"


def card_refund_key(topup_id: uuid.UUID | str, nonce: uuid.UUID | str) -> str:
    return f"card-refund:{topup_id}:{nonce}"


def _support_refunded(topup: TopUp) -> int:
    """Pence our admin has debited for refunds to this top-up's card, less reversed debits."""
    prefix = card_refund_key(topup.pk, "")
    entries = LedgerEntry.objects.filter(org_id=topup.org_id)
    debited = entries.filter(idempotency_key__startswith=prefix, type=EntryType.CARD_REFUND)
    reversed_ = entries.filter(reverses__in=debited.values("pk"))
    total = debited.aggregate(t=Sum("amount_pence"))["t"] or 0
    return -total - (reversed_.aggregate(t=Sum("amount_pence"))["t"] or 0)


def unspent_pence(topup: TopUp, balance_pence: int) -> int:
    """What of a top-up may go back to the card: what Stripe took, less what was refunded
    already (the larger of Stripe's count, `refunded_pence`, and our own standing refund
    debits, which Stripe's count may not show yet), and never more than the wallet holds."""
    if topup.status not in REFUNDABLE_STATUSES:
        return 0
    paid = topup.paid_pence or topup.amount_pence
    refunded = max(topup.refunded_pence, _support_refunded(topup))
    return max(0, min(paid - refunded, balance_pence))


@dataclass(frozen=True)
class CardRefund:
    debit: LedgerEntry
    created: bool  # this call wrote the debit (False: the same form submitted again)
    refund: payments.Refund | None  # Stripe's refund, None when it refused or did not answer
    reversal: LedgerEntry | None = None  # the credit that undid the debit when Stripe refused
    problem: str = ""  # Stripe's words when it refused or did not answer (for support)


def refund_topup_to_card(
    *,
    topup: TopUp,
    amount_pence: int,
    reason: str,
    nonce: uuid.UUID | str,
    created_by: User | None = None,
) -> CardRefund:
    """Give `amount_pence` of a paid top-up back to the card it came from.

    Debit first (its own transaction, key `card-refund:<top-up>:<nonce>`), then, outside any
    transaction, the Stripe refund with the Idempotency-Key `card-refund:<debit id>` and
    metadata naming the debit (so the charge.refunded that follows debits nothing more). If
    Stripe refuses, the debit is reversed by a refund entry keyed `card-refund-reversal:<debit
    id>`. If Stripe does not answer, the debit stands: the same call again (same nonce) asks
    Stripe again with the same key. The same nonce never refunds twice.

    Raises CardRefundRefused (nothing written) for a top-up not paid, with a dispute open,
    without a reason, or for more than `unspent_pence`.
    """
    _require_reason(reason)
    key = card_refund_key(topup.pk, nonce)
    with transaction.atomic(durable=True):
        wallet = services.lock_wallet(topup.org_id)
        locked = TopUp.objects.select_for_update().get(pk=topup.pk)
        debit = LedgerEntry.objects.filter(org_id=locked.org_id, idempotency_key=key).first()
        if debit is None:
            _check_refundable(locked, amount_pence, wallet.balance_pence)
        posting = services.record_money_gone(
            org=locked.org_id,
            amount_pence=amount_pence,
            type=EntryType.CARD_REFUND,
            idempotency_key=key,
            description=f"Refund to card of top-up {locked.pk}: {reason.strip()}"[:500],
            created_by=created_by,
        )
        debit = posting.entry
        reversal = debit.reversals.first()
    if reversal is not None:  # this form's refund was refused already: never ask again
        return CardRefund(debit, posting.created, None, reversal, "refused earlier")
    try:
        refund = payments.create_refund(
            payment_intent_id=locked.payment_intent_id,
            amount_pence=-debit.amount_pence,
            idempotency_key=f"card-refund:{debit.pk}",
            metadata={REFUND_DEBITED_AS: key, "topup_id": str(locked.pk)},
        )
    except payments.PaymentProviderUnavailable as exc:
        logger.error(
            "stripe did not answer a refund to card: the debit stands until it is retried",
            extra={"topup": str(locked.pk), "debit": str(debit.pk), "detail": exc.detail},
        )
        return CardRefund(debit, posting.created, None, None, exc.detail)
    except payments.PaymentProviderError as exc:  # refused: nothing left the account
        reversal = services.reverse_card_refund(
            debit=debit,
            reason=f"Stripe refused the refund to card: {exc.detail}"[:500],
            created_by=created_by,
        ).entry
        logger.warning(
            "stripe refused a refund to card: the debit is reversed",
            extra={"topup": str(locked.pk), "debit": str(debit.pk), "detail": exc.detail},
        )
        return CardRefund(debit, posting.created, None, reversal, exc.detail)
    return CardRefund(debit, posting.created, refund)


def _require_reason(reason: str) -> None:
    if not reason or not reason.strip():
        raise CardRefundRefused("A refund to the card needs a reason.")


def _check_refundable(topup: TopUp, amount_pence: int, balance_pence: int) -> None:
    if topup.status not in REFUNDABLE_STATUSES or not topup.payment_intent_id:
        raise CardRefundRefused("Only a paid top-up can be refunded to the card.")
    if topup.disputes.filter(status=DisputeStatus.OPEN).exists():
        raise CardRefundRefused(
            "This payment is disputed: the card holder's bank decides, do not refund it."
        )
    unspent = unspent_pence(topup, balance_pence)
    if amount_pence > unspent:
        raise CardRefundRefused(
            f"At most {format_pence(unspent)} of this top-up can go back to the card "
            "(what is left of it, and no more than the wallet holds)."
        )


# --- Receipts ------------------------------------------------------------------------------


def send_receipts() -> int:
    """Send every receipt still due (a Checkout top-up paid and not yet mailed); returns how
    many this call sent. Beat runs it every minute, and the reconciler after its repairs: a
    receipt is mailed within a minute of the payment, not by the webhook, whose delivery then
    never waits on the broker (bench/topups.py: the Celery publish per paid top-up was about a
    sixth of a delivery's Python)."""
    due = TopUp.objects.filter(
        paid_at__isnull=False, receipt_sent_at__isnull=True, stripe_session_id__isnull=False
    )
    return sum(send_receipt(topup_id) for topup_id in due.values_list("pk", flat=True))


def send_receipt(topup_id: uuid.UUID | str) -> bool:
    """Email the clinic's owner a receipt for a paid top-up, once: claim, then send. Returns
    whether this call sent it. Call outside any transaction (it may ask Stripe for the link)."""
    topup = TopUp.objects.select_related("org__owner").filter(pk=topup_id).first()
    if topup is None or topup.paid_at is None or topup.receipt_sent_at is not None:
        return False
    if not topup.receipt_url and topup.stripe_session_id:
        try:
            session = payments.retrieve_checkout_session(topup.stripe_session_id)
        except payments.PaymentProviderError:
            session = None  # the receipt goes without Stripe's link
        if session is not None and session.receipt_url:
            TopUp.objects.filter(pk=topup.pk).update(
                receipt_url=session.receipt_url, charge_id=session.charge_id or topup.charge_id
            )
            topup.receipt_url = session.receipt_url
    owner_email = getattr(topup.org.owner, "email", "")
    claimed = TopUp.objects.filter(pk=topup.pk, receipt_sent_at__isnull=True).update(
        receipt_sent_at=timezone.now()
    )
    if claimed != 1 or not owner_email:
        return False
    entry = LedgerEntry.objects.filter(
        org_id=topup.org_id, idempotency_key=topup_key(topup.stripe_session_id or "")
    ).first()
    amount = topup.paid_pence or topup.amount_pence
    context = {
        "clinic": topup.org.clinic_name or "your clinic",
        "amount": format_pence(amount),
        "balance": format_pence(entry.balance_after_pence) if entry else None,
        "date": topup.paid_at,
        "receipt_url": topup.receipt_url,
        "topup_id": topup.pk,
    }
    message = templated_email(
        "emails/billing/topup_receipt",
        context,
        subject=f"Receipt: {format_pence(amount)} added to your Voxanne wallet",
        to=[owner_email],
    )
    message.send()
    return True


# --- The reconciler ------------------------------------------------------------------------


@dataclass
class TopUpReconciliation:
    sessions_seen: int = 0
    repaired: list[str] = field(default_factory=list)  # session ids credited by this run
    expired: int = 0
    receipts_sent: int = 0
    payment_intents_seen: int = 0
    recharges_repaired: list[str] = field(default_factory=list)  # payment intents credited
    recharges_resumed: int = 0


def reconcile_topups(*, now: datetime | None = None) -> TopUpReconciliation:
    """List the Checkout Sessions of the last 72 hours at Stripe and fulfil any paid one the
    ledger lacks; the same for PaymentIntents of auto-recharges (billing/recharge.py), and
    retry recharges Stripe never answered; mark top-ups pending for over a day expired;
    send receipts still unsent.
    Run in the system context. Raises payments.PaymentProviderError if Stripe cannot list."""
    now = now or timezone.now()
    report = TopUpReconciliation()
    for session in payments.list_checkout_sessions(created_since=now - RECONCILE_WINDOW):
        report.sessions_seen += 1
        if session.payment_status == "paid":
            credited = LedgerEntry.objects.filter(idempotency_key=topup_key(session.id)).exists()
            if not credited and fulfil_session(session).credited:
                report.repaired.append(session.id)
                logger.error(
                    "RECONCILER REPAIR: a paid top-up had not been credited",
                    extra={"session": session.id, "amount_total": session.amount_total},
                )
        elif session.status == "expired":
            fulfil_session(session)
    report.expired = TopUp.objects.filter(
        status=TopUpStatus.PENDING, created_at__lt=now - PENDING_EXPIRES_AFTER
    ).update(status=TopUpStatus.EXPIRED, updated_at=now)
    recharges = recharge.reconcile_recharges(now=now)
    report.payment_intents_seen = recharges.intents_seen
    report.recharges_repaired = recharges.repaired
    report.recharges_resumed = recharges.resumed
    report.receipts_sent = send_receipts()
    return report
