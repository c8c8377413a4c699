"""Stripe, behind one small boundary: typed functions, a timeout, our own exceptions.

`STRIPE_API_BASE` replaces Stripe's `https://api.stripe.com` (tests and the local sandbox
point it at sandbox/stripe.py). Nothing from the `stripe` package leaves this module: callers
get the dataclasses below and `PaymentProviderError` subclasses, which say whether a retry
may help (`permanent`), as healthchecks' `TransportError(permanent=...)` does.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache

import stripe
from django.conf import settings

logger = logging.getLogger(__name__)
# The SDK logs every request and response at INFO; keep it to warnings.
logging.getLogger("stripe").setLevel(logging.WARNING)

# A retried POST reuses its Idempotency-Key (ours, or the one the SDK generates), so a lost
# answer never makes a second session or refund.
MAX_NETWORK_RETRIES = 2


class PaymentProviderError(Exception):
    """A Stripe call failed. `detail` is Stripe's text, for logs and admin only."""

    permanent = False

    def __init__(self, detail: str = "", *, status: int | None = None, code: str | None = None):
        self.detail = detail
        self.status = status
        self.code = code
        super().__init__(detail)


class NotConfigured(PaymentProviderError):
    """No secret key, or Stripe refused it (401/403): nothing a retry can fix."""

    permanent = True


class PaymentProviderRefused(PaymentProviderError):
    """Stripe answered 4xx (invalid request, idempotency conflict): do not retry as is."""

    permanent = True


class PaymentProviderUnavailable(PaymentProviderError):
    """Timeouts, dropped connections, 429 and 5xx: a retry later may work."""


class BadSignature(Exception):
    """The webhook's Stripe-Signature is missing, malformed, stale or matches no secret."""


@dataclass(frozen=True)
class CheckoutSession:
    id: str
    url: str | None
    status: str  # open | complete | expired
    payment_status: str  # paid | unpaid | no_payment_required
    amount_total: int | None
    currency: str | None
    client_reference_id: str | None
    metadata: dict[str, str]
    payment_intent_id: str | None
    created: int
    # Only when retrieved with the charge expanded (retrieve_checkout_session).
    charge_id: str | None = None
    receipt_url: str | None = None

    @property
    def topup_id(self) -> str | None:
        return self.metadata.get("topup_id")


@dataclass(frozen=True)
class Refund:
    id: str
    amount: int
    charge_id: str | None
    status: str  # pending | requires_action | succeeded | failed | canceled
    metadata: dict[str, str] = field(default_factory=dict)


def is_configured() -> bool:
    return bool(settings.STRIPE_SECRET_KEY)


def webhook_secrets() -> list[str]:
    return [s.strip() for s in settings.STRIPE_WEBHOOK_SECRET.split(",") if s.strip()]


@lru_cache(maxsize=4)
def _client_for(api_key: str, api_base: str, timeout: float) -> stripe.StripeClient:
    return stripe.StripeClient(
        api_key,
        base_addresses={"api": api_base.rstrip("/")},
        max_network_retries=MAX_NETWORK_RETRIES,
        http_client=stripe.RequestsClient(timeout=timeout),
    )


def _client() -> stripe.StripeClient:
    if not is_configured():
        raise NotConfigured("STRIPE_SECRET_KEY is not set")
    return _client_for(
        settings.STRIPE_SECRET_KEY,
        settings.STRIPE_API_BASE,
        float(settings.PROVIDER_TIMEOUT_SECONDS),
    )


def _mapped(exc: stripe.StripeError) -> PaymentProviderError:
    status = exc.http_status
    detail = f"Stripe {status or '-'} {type(exc).__name__}: {exc.user_message or exc}"
    code = getattr(exc, "code", None)
    if isinstance(exc, (stripe.AuthenticationError, stripe.PermissionError)):
        return NotConfigured(detail, status=status, code=code)
    if isinstance(exc, (stripe.APIConnectionError, stripe.RateLimitError)):
        return PaymentProviderUnavailable(detail, status=status, code=code)
    if status is not None and 400 <= status < 500:
        return PaymentProviderRefused(detail, status=status, code=code)
    return PaymentProviderUnavailable(detail, status=status, code=code)


class _calling:
    """Maps SDK exceptions to ours, for the block it wraps."""

    def __init__(self, what: str):
        self.what = what

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type, exc, tb) -> bool:
        if isinstance(exc, stripe.StripeError):
            mapped = _mapped(exc)
            logger.warning("stripe %s failed: %s", self.what, mapped.detail)
            raise mapped from None
        return False


def _id_of(value) -> str | None:
    """An expandable field: an id string, an expanded object, or nothing."""
    if value is None or isinstance(value, str):
        return value
    return value.id


def _session(obj) -> CheckoutSession:
    charge_id = receipt_url = None
    intent = obj.payment_intent
    if intent is not None and not isinstance(intent, str):
        charge = intent.latest_charge
        charge_id = _id_of(charge)
        if charge is not None and not isinstance(charge, str):
            receipt_url = charge.receipt_url
    return CheckoutSession(
        id=obj.id,
        url=obj.url,
        status=obj.status,
        payment_status=obj.payment_status,
        amount_total=obj.amount_total,
        currency=obj.currency,
        client_reference_id=obj.client_reference_id,
        metadata=dict(obj.metadata.to_dict()) if obj.metadata else {},
        payment_intent_id=_id_of(intent),
        created=obj.created,
        charge_id=charge_id,
        receipt_url=receipt_url,
    )


def session_from_event(data: dict) -> CheckoutSession:
    """The session carried by a verified `checkout.session.*` event (a plain dict)."""
    return CheckoutSession(
        id=data["id"],
        url=data.get("url"),
        status=data.get("status") or "",
        payment_status=data.get("payment_status") or "",
        amount_total=data.get("amount_total"),
        currency=data.get("currency"),
        client_reference_id=data.get("client_reference_id"),
        metadata=dict(data.get("metadata") or {}),
        payment_intent_id=_id_of_dict(data.get("payment_intent")),
        created=int(data.get("created") or 0),
    )


def _id_of_dict(value) -> str | None:
    if isinstance(value, dict):
        return value.get("id")
    return value


def create_checkout_session(
    *,
    amount_pence: int,
    org_id: str,
    topup_id: str,
    success_url: str,
    cancel_url: str,
    idempotency_key: str,
    customer_email: str | None = None,
) -> CheckoutSession:
    """A `mode=payment` Checkout Session in GBP for one top-up, saving the card for later
    off-session charges. The same `idempotency_key` always gets the same session back."""
    params = {
        "mode": "payment",
        "client_reference_id": org_id,
        "success_url": success_url,
        "cancel_url": cancel_url,
        "line_items": [
            {
                "quantity": 1,
                "price_data": {
                    "currency": "gbp",
                    "unit_amount": amount_pence,
                    "product_data": {"name": "Voxanne wallet top-up"},
                },
            }
        ],
        "metadata": {"topup_id": topup_id, "org_id": org_id},
        "payment_intent_data": {
            "setup_future_usage": "off_session",
            "metadata": {"topup_id": topup_id, "org_id": org_id},
        },
    }
    if customer_email:
        params["customer_email"] = customer_email
    with _calling("create checkout session"):
        obj = _client().v1.checkout.sessions.create(
            params, options={"idempotency_key": idempotency_key}
        )
    return _session(obj)


def retrieve_checkout_session(session_id: str) -> CheckoutSession:
    """The session as Stripe holds it now, with its charge (id, receipt link) when paid."""
    with _calling("retrieve checkout session"):
        obj = _client().v1.checkout.sessions.retrieve(
            session_id, {"expand": ["payment_intent.latest_charge"]}
        )
    return _session(obj)


def list_checkout_sessions(*, created_since: datetime) -> Iterator[CheckoutSession]:
    """Every Checkout Session created at or after `created_since`, newest first (all pages)."""
    with _calling("list checkout sessions"):
        page = _client().v1.checkout.sessions.list(
            {"created": {"gte": int(created_since.timestamp())}, "limit": 100}
        )
        for obj in page.auto_paging_iter():
            yield _session(obj)


def expire_checkout_session(session_id: str) -> CheckoutSession:
    with _calling("expire checkout session"):
        return _session(_client().v1.checkout.sessions.expire(session_id))


def list_refunds(*, charge_id: str) -> list[Refund]:
    """Every refund of a charge, wherever it was made (our admin or Stripe's dashboard)."""
    with _calling("list refunds"):
        page = _client().v1.refunds.list({"charge": charge_id, "limit": 100})
        return [_refund(r) for r in page.auto_paging_iter()]


def create_refund(
    *, payment_intent_id: str, amount_pence: int, idempotency_key: str, metadata: dict[str, str]
) -> Refund:
    """Give `amount_pence` of a payment back to the card it came from."""
    with _calling("create refund"):
        obj = _client().v1.refunds.create(
            {"payment_intent": payment_intent_id, "amount": amount_pence, "metadata": metadata},
            options={"idempotency_key": idempotency_key},
        )
    return _refund(obj)


def _refund(obj) -> Refund:
    return Refund(
        id=obj.id,
        amount=obj.amount,
        charge_id=_id_of(obj.charge),
        status=obj.status,
        metadata=dict(obj.metadata.to_dict()) if obj.metadata else {},
    )


def verify_webhook(payload: bytes, signature_header: str | None) -> dict:
    """The event in a webhook's raw body, once its signature matches one of the configured
    secrets within Stripe's 300 s tolerance. Raises BadSignature otherwise (and NotConfigured
    when no secret is set)."""
    secrets = webhook_secrets()
    if not secrets:
        raise NotConfigured("STRIPE_WEBHOOK_SECRET is not set")
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        raise BadSignature("the body is not UTF-8") from None
    problem = "no Stripe-Signature header"
    for secret in secrets:
        try:
            stripe.WebhookSignature.verify_header(
                text, signature_header, secret, stripe.Webhook.DEFAULT_TOLERANCE
            )
        except stripe.SignatureVerificationError as exc:
            problem = str(exc)
            continue
        try:
            event = json.loads(text)
        except ValueError:
            raise BadSignature("the signed body is not JSON") from None
        if not isinstance(event, dict) or not {"id", "type", "data"} <= event.keys():
            raise BadSignature("the signed body is not a Stripe event")
        return event
    raise BadSignature(problem)


# --- Off-session charges of a saved card (auto-recharge) ----------------------------------


class CardRefused(PaymentProviderRefused):
    """The saved card could not be charged off-session: `code` is Stripe's
    (`authentication_required`: the customer must pay on-session; `card_declined`, ...)."""

    def __init__(self, detail: str = "", *, code: str | None, payment_intent_id: str | None):
        super().__init__(detail, status=402, code=code)
        self.payment_intent_id = payment_intent_id


@dataclass(frozen=True)
class PaymentIntent:
    id: str
    status: str  # succeeded | processing | requires_payment_method | requires_action | ...
    amount: int
    amount_received: int
    currency: str | None
    customer_id: str | None
    payment_method_id: str | None
    metadata: dict[str, str]
    created: int
    latest_charge_id: str | None = None
    # Why the last confirmation failed (authentication_required, card_declined, ...).
    last_error_code: str | None = None

    @property
    def recharge_attempt_id(self) -> str | None:
        return self.metadata.get("recharge_attempt_id")


def _intent(obj) -> PaymentIntent:
    return PaymentIntent(
        id=obj.id,
        status=obj.status,
        amount=obj.amount,
        amount_received=getattr(obj, "amount_received", 0) or 0,
        currency=obj.currency,
        customer_id=_id_of(obj.customer),
        payment_method_id=_id_of(obj.payment_method),
        metadata=dict(obj.metadata.to_dict()) if obj.metadata else {},
        created=obj.created,
        latest_charge_id=_id_of(getattr(obj, "latest_charge", None)),
        last_error_code=getattr(getattr(obj, "last_payment_error", None), "code", None),
    )


def intent_from_event(data: dict) -> PaymentIntent:
    """The PaymentIntent carried by a verified `payment_intent.*` event (a plain dict)."""
    return PaymentIntent(
        id=data["id"],
        status=data.get("status") or "",
        amount=int(data.get("amount") or 0),
        amount_received=int(data.get("amount_received") or 0),
        currency=data.get("currency"),
        customer_id=_id_of_dict(data.get("customer")),
        payment_method_id=_id_of_dict(data.get("payment_method")),
        metadata=dict(data.get("metadata") or {}),
        created=int(data.get("created") or 0),
        latest_charge_id=_id_of_dict(data.get("latest_charge")),
        last_error_code=(data.get("last_payment_error") or {}).get("code"),
    )


def create_off_session_payment(
    *,
    amount_pence: int,
    customer_id: str,
    payment_method_id: str,
    metadata: dict[str, str],
    idempotency_key: str,
) -> PaymentIntent:
    """Charge a saved card now, without the customer (`off_session`, `confirm`), in GBP.
    The same key always means the same charge. Raises CardRefused (declined, authentication
    required), PaymentProviderUnavailable (retry later with the SAME key), or another
    PaymentProviderError."""
    params = {
        "amount": amount_pence,
        "currency": "gbp",
        "customer": customer_id,
        "payment_method": payment_method_id,
        "off_session": True,
        "confirm": True,
        "metadata": metadata,
    }
    try:
        obj = _client().v1.payment_intents.create(
            params, options={"idempotency_key": idempotency_key}
        )
    except stripe.CardError as exc:
        error = exc.error
        intent = getattr(error, "payment_intent", None) if error is not None else None
        detail = f"Stripe 402 CardError: {exc.user_message or exc}"
        logger.warning("stripe off-session charge refused: %s", detail)
        raise CardRefused(detail, code=exc.code, payment_intent_id=_id_of(intent)) from None
    except stripe.StripeError as exc:
        mapped = _mapped(exc)
        logger.warning("stripe create payment intent failed: %s", mapped.detail)
        raise mapped from None
    return _intent(obj)


def retrieve_payment_intent(payment_intent_id: str) -> PaymentIntent:
    with _calling("retrieve payment intent"):
        return _intent(_client().v1.payment_intents.retrieve(payment_intent_id))


def list_payment_intents(*, created_since: datetime) -> Iterator[PaymentIntent]:
    """Every PaymentIntent created at or after `created_since`, newest first (all pages)."""
    with _calling("list payment intents"):
        page = _client().v1.payment_intents.list(
            {"created": {"gte": int(created_since.timestamp())}, "limit": 100}
        )
        for obj in page.auto_paging_iter():
            yield _intent(obj)
