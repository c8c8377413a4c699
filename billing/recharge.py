"""Auto-recharge: when a debit leaves the balance below the clinic's threshold, its saved card
is charged off-session for the amount it chose.

- Trigger: billing/services.py sees the debit under the wallet lock (the wallet row carries
  `auto_recharge_below_pence`) and, once it commits, queues `billing.balance_dropped`, which
  calls `recharge_if_needed` (then the low-balance email, which an attempt in flight mutes).
- One attempt at a time: a RechargeAttempt row is created under the wallet lock, and the
  database allows one `in_flight` per org; the rolling-24-hour cap
  (AUTO_RECHARGE_MAX_PER_DAY) counts attempts whatever became of them.
- Stripe is called outside any transaction with the attempt's own idempotency key
  (`recharge:<attempt id>`): a retry after Stripe was down is the same charge, never a second.
  An attempt Stripe did not answer stays in flight; its lease lapses and the next trigger or
  the hourly reconciler (`resume_stale_attempts`) tries it again with the same key.
- The credit: `fulfil_payment_intent`, called by the answer, the `payment_intent.succeeded`
  webhook and the reconciler alike, writes one `topup` entry keyed `recharge:<pi id>` and a
  paid TopUp row for the PaymentIntent (so refunds and disputes work as for any top-up). A
  PaymentIntent that is not a recharge (a Checkout payment) is left to its session.
- Refused (authentication required, declined): the attempt fails, auto-recharge is paused
  (`enabled` stays true) and the owner is emailed a link to a Checkout top-up. Nothing more
  is tried until the clinic saves its settings again.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from billing import services
from billing import stripe as payments
from billing.models import (
    AUTO_RECHARGE_MIN_THRESHOLD_PENCE,
    AutoRecharge,
    LedgerEntry,
    RechargeAttempt,
    RechargeState,
    TopUp,
    TopUpStatus,
    format_pence,
)
from billing.signals import topup_paid
from voxanne.emails import templated_email
from voxanne.errors import ApiError
from voxanne.models import Organization

logger = logging.getLogger(__name__)

CURRENCY = "gbp"
# How long a caller of Stripe holds an attempt; after that it is someone else's to retry.
ATTEMPT_LEASE = timedelta(minutes=2)
# An attempt Stripe did not answer is tried again after this.
RETRY_AFTER = timedelta(minutes=1)
RECONCILE_WINDOW = timedelta(hours=72)


class AutoRechargeInvalid(ApiError):
    code = "invalid_auto_recharge"


class NoSavedCard(ApiError):
    default_message = (
        "Auto-recharge needs a saved card. Top up your wallet by card once, then turn it on."
    )
    code = "no_saved_card"


def credit_key(payment_intent_id: str) -> str:
    return f"recharge:{payment_intent_id}"


# --- Settings ------------------------------------------------------------------------------


def settings_for(org: Organization | str) -> AutoRecharge:
    """The org's auto-recharge settings (off, with the defaults, when never saved)."""
    org_id = getattr(org, "pk", org)
    found = AutoRecharge.objects.filter(org_id=org_id).first()
    return found or AutoRecharge(org_id=org_id)


def _whole(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise AutoRechargeInvalid(f"{name} must be a whole number of pence.")
    return value


def validate(*, enabled: object, threshold_pence: object, amount_pence: object) -> tuple:
    if not isinstance(enabled, bool):
        raise AutoRechargeInvalid("enabled must be true or false.")
    threshold = _whole(threshold_pence, "threshold_pence")
    amount = _whole(amount_pence, "amount_pence")
    if threshold < AUTO_RECHARGE_MIN_THRESHOLD_PENCE:
        raise AutoRechargeInvalid(
            f"threshold_pence must be at least {AUTO_RECHARGE_MIN_THRESHOLD_PENCE} "
            f"({format_pence(AUTO_RECHARGE_MIN_THRESHOLD_PENCE)})."
        )
    low, high = settings.WALLET_MIN_TOPUP_PENCE, settings.WALLET_MAX_TOPUP_PENCE
    if not low <= amount <= high:
        raise AutoRechargeInvalid(
            f"amount_pence must be between {format_pence(low)} and {format_pence(high)}."
        )
    return enabled, threshold, amount


def saved_card(org: Organization | str) -> tuple[str, str] | None:
    """(customer, payment method) of the clinic's newest paid Checkout top-up: that
    PaymentIntent's own payment method, as Stripe holds it. Call outside a transaction."""
    org_id = getattr(org, "pk", org)
    paid = (
        TopUp.objects.filter(org_id=org_id, stripe_session_id__isnull=False, paid_at__isnull=False)
        .exclude(payment_intent_id="")
        .order_by("-paid_at")
        .first()
    )
    if paid is None:
        return None
    try:
        intent = payments.retrieve_payment_intent(paid.payment_intent_id)
    except payments.PaymentProviderUnavailable:
        from billing.topups import PaymentProviderUnreachable

        raise PaymentProviderUnreachable() from None
    if not (intent.customer_id and intent.payment_method_id):
        return None
    return intent.customer_id, intent.payment_method_id


def update_settings(
    *, org: Organization, enabled: object, threshold_pence: object, amount_pence: object
) -> AutoRecharge:
    """Save the clinic's auto-recharge settings; saving clears a pause. Turning it on takes
    the saved card of its paid Checkout top-up. Raises AutoRechargeInvalid, NoSavedCard, or
    PaymentProviderUnreachable (503) when Stripe cannot say which card that was."""
    enabled, threshold, amount = validate(
        enabled=enabled, threshold_pence=threshold_pence, amount_pence=amount_pence
    )
    card = saved_card(org) if enabled else None
    if enabled and card is None:
        raise NoSavedCard()
    with transaction.atomic(durable=True):
        wallet = services.lock_wallet(org)
        current = AutoRecharge.objects.select_for_update().filter(org_id=org.pk).first()
        current = current or AutoRecharge(org_id=org.pk)
        current.enabled, current.threshold_pence, current.amount_pence = enabled, threshold, amount
        if card is not None:
            current.stripe_customer_id, current.stripe_payment_method_id = card
        current.paused_reason, current.paused_at = "", None
        current.save()
        services.set_auto_recharge_trigger(org=org.pk, below_pence=threshold if enabled else None)
        if enabled and wallet.balance_pence < threshold:
            # Already below: recharge now rather than at the next debit.
            transaction.on_commit(lambda: _queue_check(org.pk), robust=True)
    return current


def _queue_check(org_id) -> None:
    from billing.tasks import balance_dropped

    balance_dropped.apply_async(args=[str(org_id)], retry=False)


# --- Attempts ------------------------------------------------------------------------------


def in_flight(org_id) -> bool:
    return RechargeAttempt.objects.filter(org_id=org_id, state=RechargeState.IN_FLIGHT).exists()


def _start(org_id, *, now: datetime) -> RechargeAttempt | None:
    """A new attempt if the wallet needs one and may have one; None otherwise."""
    try:
        with transaction.atomic(durable=True):
            wallet = services.lock_wallet(org_id)
            rules = AutoRecharge.objects.filter(org_id=org_id).first()
            if rules is None or not rules.enabled or rules.paused_reason:
                return None
            if not rules.has_payment_method or wallet.frozen_at is not None:
                return None
            if wallet.balance_pence >= rules.threshold_pence:
                return None
            if in_flight(org_id):
                return None
            recent = RechargeAttempt.objects.filter(
                org_id=org_id, created_at__gt=now - timedelta(hours=24)
            ).count()
            if recent >= settings.AUTO_RECHARGE_MAX_PER_DAY:
                logger.warning(
                    "auto-recharge daily cap reached; no attempt",
                    extra={"org_id": str(org_id), "attempts_24h": recent},
                )
                return None
            return RechargeAttempt.objects.create(
                org_id=org_id,
                amount_pence=rules.amount_pence,
                stripe_customer_id=rules.stripe_customer_id,
                stripe_payment_method_id=rules.stripe_payment_method_id,
                lease_until=timezone.now() + ATTEMPT_LEASE,
            )
    except IntegrityError:  # another attempt went in flight meanwhile (the constraint)
        return None


def _claim_stale(org_id=None) -> list[uuid.UUID]:
    """Take in-flight attempts whose lease lapsed (their caller died or Stripe was down)."""
    now = timezone.now()
    stale = RechargeAttempt.objects.filter(state=RechargeState.IN_FLIGHT, lease_until__lt=now)
    if org_id is not None:
        stale = stale.filter(org_id=org_id)
    claimed = []
    for attempt_id in stale.values_list("pk", flat=True)[:100]:
        taken = RechargeAttempt.objects.filter(
            pk=attempt_id, state=RechargeState.IN_FLIGHT, lease_until__lt=now
        ).update(lease_until=now + ATTEMPT_LEASE, updated_at=now)
        if taken == 1:
            claimed.append(attempt_id)
    return claimed


@dataclass(frozen=True)
class Outcome:
    attempt_id: uuid.UUID | None
    result: str  # none | succeeded | pending | retry_later | paused


def recharge_if_needed(org_id, *, now: datetime | None = None) -> Outcome:
    """Finish the org's stale attempt, or start one if the balance is below the threshold.
    Run in the system context, outside any transaction."""
    now = now or timezone.now()
    for attempt_id in _claim_stale(org_id):
        return Outcome(attempt_id, charge(attempt_id))
    attempt = _start(org_id, now=now)
    if attempt is None:
        return Outcome(None, "none")
    return Outcome(attempt.pk, charge(attempt.pk))


def charge(attempt_id) -> str:
    """Ask Stripe to charge the attempt's card (its own idempotency key), then record what
    Stripe said. Returns succeeded, pending (Stripe is still processing), retry_later or
    paused. The caller holds the attempt's lease."""
    attempt = RechargeAttempt.objects.get(pk=attempt_id)
    if attempt.state != RechargeState.IN_FLIGHT:
        return "none"
    try:
        intent = payments.create_off_session_payment(
            amount_pence=attempt.amount_pence,
            customer_id=attempt.stripe_customer_id,
            payment_method_id=attempt.stripe_payment_method_id,
            metadata={"recharge_attempt_id": str(attempt.pk), "org_id": str(attempt.org_id)},
            idempotency_key=attempt.stripe_idempotency_key,
        )
    except payments.CardRefused as exc:
        fail(attempt.pk, code=exc.code or "card_declined", detail=exc.detail)
        return "paused"
    except payments.PaymentProviderUnavailable as exc:
        logger.warning("auto-recharge: Stripe did not answer; retrying later: %s", exc.detail)
        RechargeAttempt.objects.filter(pk=attempt.pk, state=RechargeState.IN_FLIGHT).update(
            lease_until=timezone.now() + RETRY_AFTER, updated_at=timezone.now()
        )
        return "retry_later"
    except payments.PaymentProviderError as exc:
        logger.error("auto-recharge: Stripe refused the charge: %s", exc.detail)
        fail(attempt.pk, code=exc.code or "stripe_refused", detail=exc.detail)
        return "paused"
    if intent.status == "succeeded":
        fulfil_payment_intent(intent)
        return "succeeded"
    RechargeAttempt.objects.filter(pk=attempt.pk).update(
        payment_intent_id=intent.id, lease_until=timezone.now() + RETRY_AFTER
    )
    return "pending"  # the webhook (or the reconciler) settles it


# --- Fulfilment: the one function for recharge payments ------------------------------------


@dataclass(frozen=True)
class Fulfilled:
    attempt: RechargeAttempt | None
    credited: bool
    note: str = ""


def _attempt_for(intent: payments.PaymentIntent) -> RechargeAttempt | None:
    if intent.recharge_attempt_id:
        try:
            found = RechargeAttempt.objects.filter(pk=uuid.UUID(intent.recharge_attempt_id))
        except ValueError:
            return None
        attempt = found.first()
        if attempt is not None and intent.metadata.get("org_id") not in (None, str(attempt.org_id)):
            return None
        return attempt
    return RechargeAttempt.objects.filter(payment_intent_id=intent.id).first()


def fulfil_payment_intent(intent: payments.PaymentIntent) -> Fulfilled:
    """Bring our books in line with a PaymentIntent Stripe reports. A succeeded recharge: one
    `topup` entry for `amount_received` keyed `recharge:<pi id>` (whoever calls first),
    a paid TopUp row for it, the attempt succeeded, `topup_paid` sent. Not a recharge (a
    Checkout payment, credited by its session): nothing. Joins the caller's transaction."""
    with transaction.atomic():
        found = _attempt_for(intent)
        if found is None:
            return Fulfilled(None, False, f"payment intent {intent.id} is not an auto-recharge")
        if intent.status != "succeeded":
            return Fulfilled(found, False, f"payment intent {intent.status}")
        if (intent.currency or "").lower() != CURRENCY or intent.amount_received <= 0:
            logger.error(
                "a recharge was paid in another currency; not credited", extra={"pi": intent.id}
            )
            return Fulfilled(found, False, f"paid in {intent.currency}, not credited")
        services.lock_wallet(found.org_id)  # wallet first, always
        attempt = RechargeAttempt.objects.select_for_update().get(pk=found.pk)
        posting = services.record_topup(
            org=attempt.org_id,
            amount_pence=intent.amount_received,
            idempotency_key=credit_key(intent.id),
            description=f"Auto-recharge by saved card (Stripe {intent.id})",
        )
        now = timezone.now()
        topup, _ = TopUp.objects.get_or_create(
            org_id=attempt.org_id,
            idempotency_key=attempt.stripe_idempotency_key,
            defaults={
                "amount_pence": attempt.amount_pence,
                "status": TopUpStatus.PAID,
                "payment_intent_id": intent.id,
                "charge_id": intent.latest_charge_id or "",
                "paid_pence": intent.amount_received,
                "paid_at": now,
            },
        )
        if attempt.state != RechargeState.SUCCEEDED:  # paid outranks failed: Stripe took it
            attempt.state = RechargeState.SUCCEEDED
            attempt.payment_intent_id = intent.id
            attempt.finished_at = attempt.finished_at or now
            attempt.save(update_fields=["state", "payment_intent_id", "finished_at", "updated_at"])
        if posting.created:
            topup_paid.send(sender=TopUp, topup=topup)
        return Fulfilled(attempt, posting.created)


def apply_payment_failed(intent: payments.PaymentIntent) -> str:
    """`payment_intent.payment_failed` for a recharge still in flight: it failed. Returns
    why the event was ignored, or ""."""
    attempt = _attempt_for(intent)
    if attempt is None:
        return f"payment intent {intent.id} is not an auto-recharge"
    if attempt.state == RechargeState.IN_FLIGHT:
        code = intent.last_error_code or "payment_failed"
        fail(attempt.pk, code=code, detail=f"Stripe {intent.id} payment_failed ({code})")
    return ""


# --- Refused: pause and tell the owner -----------------------------------------------------

PAUSE_REASONS = {
    "authentication_required": "Your bank asked you to confirm the payment, which auto-recharge "
    "cannot do for you. Top up once by card to confirm it, then save your settings again.",
    "card_declined": "Your card was declined. Top up by card (or with another card), then save "
    "your settings again.",
}


def fail(attempt_id, *, code: str, detail: str) -> None:
    """Mark an attempt failed and pause auto-recharge with the reason; email the owner once
    (after the commit). Joins the caller's transaction or opens its own."""
    with transaction.atomic():
        attempt = RechargeAttempt.objects.filter(pk=attempt_id).first()
        if attempt is None:
            return
        services.lock_wallet(attempt.org_id)
        attempt = RechargeAttempt.objects.select_for_update().get(pk=attempt_id)
        if attempt.state != RechargeState.IN_FLIGHT:
            return
        now = timezone.now()
        attempt.state, attempt.finished_at = RechargeState.FAILED, now
        attempt.error_code, attempt.error_detail = code[:64], detail[:4000]
        attempt.save(update_fields=["state", "finished_at", "error_code", "error_detail"])
        reason = PAUSE_REASONS.get(code, f"The last automatic payment failed ({code}).")
        AutoRecharge.objects.filter(org_id=attempt.org_id).update(
            paused_reason=f"{code}: {reason}"[:500], paused_at=now, updated_at=now
        )
        services.set_auto_recharge_trigger(org=attempt.org_id, below_pence=None)
        logger.warning("auto-recharge paused", extra={"org_id": str(attempt.org_id), "code": code})
        transaction.on_commit(lambda: _queue_paused_email(attempt_id), robust=True)


def _queue_paused_email(attempt_id) -> None:
    from billing.tasks import send_recharge_paused_email

    send_recharge_paused_email.apply_async(args=[str(attempt_id)], retry=False)


def send_paused_email(attempt_id) -> bool:
    """Email the owner why auto-recharge stopped, with a link to a Checkout top-up, once per
    failed attempt (claimed first). Call outside any transaction."""
    from billing import topups

    attempt = RechargeAttempt.objects.filter(pk=attempt_id, state=RechargeState.FAILED).first()
    if attempt is None or attempt.owner_notified_at is not None:
        return False
    org = Organization.objects.select_related("owner").get(pk=attempt.org_id)
    recipient = getattr(org.owner, "email", "")
    claimed = RechargeAttempt.objects.filter(pk=attempt.pk, owner_notified_at__isnull=True).update(
        owner_notified_at=timezone.now()
    )
    if claimed != 1 or not recipient:
        return False
    amount = min(
        max(attempt.amount_pence, settings.WALLET_MIN_TOPUP_PENCE), settings.WALLET_MAX_TOPUP_PENCE
    )
    link = f"{settings.APP_BASE_URL}/billing"
    try:
        checkout = topups.start_topup(
            org=org, amount_pence=amount, idempotency_key=f"recharge-paused:{attempt.pk}"
        )
        link = checkout.checkout_url or link
    except ApiError as exc:
        logger.warning("no checkout link for the paused email: %s", exc.message)
    rules = settings_for(org)
    context = {
        "clinic": org.clinic_name or "your clinic",
        "amount": format_pence(attempt.amount_pence),
        "reason": PAUSE_REASONS.get(attempt.error_code, rules.paused_reason),
        "topup_url": link,
        "balance": format_pence(services.wallet_for(org).balance_pence),
    }
    message = templated_email(
        "emails/billing/recharge_paused",
        context,
        subject="Auto-recharge is paused: please top up your Voxanne wallet",
        to=[recipient],
    )
    try:
        message.send()
    except Exception:
        logger.exception("could not send the auto-recharge paused email")
        RechargeAttempt.objects.filter(pk=attempt.pk).update(owner_notified_at=None)
        return False
    return True


# --- The reconciler ------------------------------------------------------------------------


@dataclass
class RechargeReconciliation:
    intents_seen: int = 0
    repaired: list[str] = field(default_factory=list)  # payment intents credited by this run
    resumed: int = 0


def reconcile_recharges(*, now: datetime | None = None) -> RechargeReconciliation:
    """List the PaymentIntents of the last 72 hours at Stripe and credit any succeeded
    recharge the ledger lacks; retry attempts whose caller died or Stripe did not answer.
    Run in the system context. Raises payments.PaymentProviderError if Stripe cannot list."""
    now = now or timezone.now()
    report = RechargeReconciliation()
    for intent in payments.list_payment_intents(created_since=now - RECONCILE_WINDOW):
        report.intents_seen += 1
        if intent.status != "succeeded" or not intent.recharge_attempt_id:
            continue  # Checkout payments are the sessions' reconciler's
        if LedgerEntry.objects.filter(idempotency_key=credit_key(intent.id)).exists():
            continue
        if fulfil_payment_intent(intent).credited:
            report.repaired.append(intent.id)
            logger.error(
                "RECONCILER REPAIR: a paid auto-recharge had not been credited",
                extra={"payment_intent": intent.id, "amount": intent.amount_received},
            )
    for attempt_id in _claim_stale():
        charge(attempt_id)
        report.resumed += 1
    return report
