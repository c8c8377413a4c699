"""A Stripe double on 127.0.0.1: the parts of Stripe's API that top-ups use, on the wire.

It speaks Stripe's format, so the official SDK (through billing/stripe.py) is what talks to it:
form-encoded nested parameters (`metadata[topup_id]`, `line_items[0][price_data][unit_amount]`,
`expand[0]`), Bearer key auth, `Idempotency-Key` replay of the first answer (a reuse with other
parameters is an `idempotency_error`), list objects with `has_more` / `starting_after`, and
errors shaped `{"error": {"type", "message", "code"}}`.

State: Checkout Sessions (create, retrieve with `payment_intent.latest_charge` expanded, list
with `created[gte]`, expire), the PaymentIntent and Charge a payment makes, refunds (ours and
"dashboard" ones, and `fail_refund` for one that fails afterwards) and disputes. A hosted
checkout page (`session.url`: amount, Pay, Cancel) completes the session and sends the signed
webhook, as Stripe does:
`Stripe-Signature: t=<unix>,v1=HMAC-SHA256(secret, "<t>.<body>")`.

Switches, for tests: `fail(step, reply)` / `delay_step(step, s)` on API steps (create_session,
retrieve_session, list_sessions, expire_session, create_refund, list_refunds) play the network
(the answer is not kept for the Idempotency-Key); `refuse_refunds(message)` makes Stripe itself
refuse the next refunds (a 400 kept for the key, as Stripe keeps errors); and for webhook
deliveries `duplicate(n)`, `drop(n)`, `delay_webhooks(s)`, `hold()` + `release(order)` (reorder),
`redeliver_failed()` (Stripe's retry of deliveries we answered with non-2xx).

Run standalone for `make run`: `python -m sandbox.stripe --port 12111 --webhook-url URL`.
Imports nothing from tests/ (and not the stripe SDK: it is the other side of the wire).
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import html
import itertools
import json
import random
import re
import secrets
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import parse_qsl

from sandbox.server import FaultyDouble, Reply, Request

API_KEY = "sk_test_sandbox"
WEBHOOK_SECRET = "whsec_sandbox"
API_VERSION = "2026-10-28.endive"


# --- Stripe's wire format ------------------------------------------------------------------


def request_params(request: Request) -> dict:
    """The request's parameters, nested as Stripe nests them (`a[b][0]=c`)."""
    raw = request.body.decode() if request.method == "POST" else request.raw_query
    return decode_params(raw)


def decode_params(raw: str) -> dict:
    """`a[b][c]=1&l[0]=x&l[1]=y` -> {"a": {"b": {"c": "1"}}, "l": ["x", "y"]}."""
    root: dict = {}
    for key, value in parse_qsl(raw, keep_blank_values=True):
        match = re.fullmatch(r"([^\[]+)((?:\[[^\]]*\])*)", key)
        path = [match[1], *re.findall(r"\[([^\]]*)\]", match[2])] if match else [key]
        node = root
        for part in path[:-1]:
            node = node.setdefault(part or str(len(node)), {})
        node[path[-1] or str(len(node))] = value
    return _lists(root)


def _lists(node):
    if not isinstance(node, dict):
        return node
    items = {k: _lists(v) for k, v in node.items()}
    if items and all(k.isdigit() for k in items):
        return [items[k] for k in sorted(items, key=int)]
    return items


def stripe_error(status: int, type: str, message: str, code: str | None = None, **extra) -> Reply:
    error = {"type": type, "message": message, **extra}
    if code:
        error["code"] = code
    return Reply(status, {"error": error})


def missing(kind: str, object_id: str) -> Reply:
    return stripe_error(
        404,
        "invalid_request_error",
        f"No such {kind}: '{object_id}'",
        "resource_missing",
        param="id",
    )


def sign(payload: str, secret: str, timestamp: int | None = None) -> str:
    """The Stripe-Signature header Stripe would send for `payload`."""
    t = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), f"{t}.{payload}".encode(), hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def format_pence(pence: int) -> str:
    pounds, rest = divmod(pence, 100)
    return f"£{pounds:,}.{rest:02d}"


# --- The double ----------------------------------------------------------------------------


@dataclass
class Delivery:
    event_id: str
    type: str
    status: int | None  # None: no answer (connection refused, timeout)


class StripeDouble(FaultyDouble):
    def __init__(
        self,
        *,
        api_key: str = API_KEY,
        webhook_secret: str = WEBHOOK_SECRET,
        webhook_url: str | None = None,
    ):
        super().__init__()
        self.api_key = api_key
        self.webhook_secret = webhook_secret
        # Where events go: a URL, or a callable(body: bytes, headers: dict) -> status code
        # (tests hand in Django's test client this way).
        self.webhook_url = webhook_url
        self.webhook_sender: Callable[[bytes, dict[str, str]], int] | None = None
        self.sessions: dict[str, dict] = {}
        self.payment_intents: dict[str, dict] = {}
        self.charges: dict[str, dict] = {}
        self.refunds: dict[str, dict] = {}
        self.disputes: dict[str, dict] = {}
        self.customers: dict[str, dict] = {}
        self.payment_methods: dict[str, dict] = {}
        # What an off-session charge of a saved card does: succeed (the default), "decline"
        # (card_declined) or "authentication_required" (the bank wants the customer present).
        self.card_outcomes: dict[str, str] = {}
        # Real Stripe also sends payment_intent.succeeded for a paid Checkout Session; off by
        # default so tests that count deliveries of checkout events see only those.
        self.checkout_emits_payment_intent_events = False
        self.events: list[dict] = []
        self.deliveries: list[Delivery] = []
        self.dropped: list[dict] = []
        self._held: list[dict] | None = None
        self._idempotent: dict[str, tuple[str, dict, Reply]] = {}
        self._key_locks: dict[str, threading.Lock] = {}
        self._fault = threading.local()  # did a fail() switch answer this thread's request?
        self._refund_refusals: list[str] = []
        self._duplicates = 1
        self._drop = 0
        self._webhook_delay = 0.0
        self._serial = itertools.count(1)
        self._threads: list[threading.Thread] = []

    # --- lifecycle ---------------------------------------------------------------------
    def env(self) -> dict[str, str]:
        """The settings that point the app at this double."""
        return {
            "STRIPE_SECRET_KEY": self.api_key,
            "STRIPE_WEBHOOK_SECRET": self.webhook_secret,
            "STRIPE_API_BASE": self.url,
        }

    def stop(self) -> None:
        for thread in self._threads:  # webhooks sent late (delay_webhooks)
            thread.join(timeout=10)
        super().stop()

    def crashed(self, exc: Exception) -> Reply:
        return stripe_error(500, "api_error", f"double crashed: {exc!r}")

    def headers_for(self, reply: Reply) -> dict[str, str]:
        return {**reply.headers, "Request-Id": f"req_{secrets.token_hex(7)}"}

    # --- API switches (and `fail(step, reply)`) ----------------------------------------
    def delay_step(self, step: str, seconds: float) -> None:
        """`delay(step, seconds)`, by the name that tells it from `delay_webhooks`."""
        self.delay(step, seconds)

    def refuse_refunds(self, message: str = "This charge cannot be refunded.", times: int = 1):
        """Stripe refuses the next `times` refund creations with a 400 `charge_not_refundable`
        (kept for their Idempotency-Key: a retry with the key gets the same refusal)."""
        with self.lock:
            self._refund_refusals = [message] * times

    def heal(self) -> None:
        super().heal()
        with self.lock:
            self._refund_refusals.clear()

    # --- webhook switches --------------------------------------------------------------
    def duplicate(self, times: int) -> None:
        """Deliver every event `times` times (1: once, as normal)."""
        self._duplicates = times

    def drop(self, count: int = -1) -> None:
        """Do not deliver the next `count` events (-1: none from now on); see `dropped`."""
        self._drop = 10**9 if count < 0 else count

    def delay_webhooks(self, seconds: float) -> None:
        """Deliver events `seconds` later, from a thread (the triggering call returns first)."""
        self._webhook_delay = seconds

    def hold(self) -> None:
        """Keep events back until `release()`: to deliver them out of order."""
        self._held = []

    def take_held(self) -> list[dict]:
        """The held events, for a caller that delivers them itself (a benchmark)."""
        held, self._held = self._held or [], None
        return held

    def release(self, order: str = "reversed", *, seed: int = 0) -> list[int | None]:
        """Deliver the held events: "sent" (as they happened), "reversed" or "shuffled"."""
        held, self._held = self._held or [], None
        if order == "reversed":
            held.reverse()
        elif order == "shuffled":
            random.Random(seed).shuffle(held)
        return [self.deliver(event) for event in held]

    def redeliver_failed(self) -> list[int | None]:
        """Stripe's retry: send again every event whose latest delivery was not a 2xx."""
        latest: dict[str, Delivery] = {}
        for delivery in self.deliveries:
            latest[delivery.event_id] = delivery
        failed = [d.event_id for d in latest.values() if not (d.status and d.status < 300)]
        events = {e["id"]: e for e in self.events}
        return [self.deliver(events[event_id]) for event_id in failed]

    # --- events --------------------------------------------------------------------------
    def emit(self, type: str, obj: dict) -> dict:
        """Record an event about `obj` and send it (subject to the webhook switches)."""
        event = {
            "id": self._id("evt"),
            "object": "event",
            "api_version": API_VERSION,
            "created": int(time.time()),
            "type": type,
            "livemode": False,
            "pending_webhooks": 1,
            "request": {"id": None, "idempotency_key": None},
            "data": {"object": json.loads(json.dumps(obj))},
        }
        with self.lock:
            self.events.append(event)
            if self._drop:
                self._drop -= 1
                self.dropped.append(event)
                return event
            if self._held is not None:
                self._held.append(event)
                return event
        if self._webhook_delay:
            thread = threading.Thread(
                target=self._deliver_later, args=(event, self._webhook_delay), daemon=True
            )
            self._threads.append(thread)
            thread.start()
        else:
            for _ in range(self._duplicates):
                self.deliver(event)
        return event

    def _deliver_later(self, event: dict, seconds: float) -> None:
        time.sleep(seconds)
        for _ in range(self._duplicates):
            self.deliver(event)

    def signed(self, event: dict, *, secret: str | None = None, timestamp: int | None = None):
        """(body, headers) of a delivery of `event`, signed as Stripe signs it."""
        body = json.dumps(event, indent=2)
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
            "Stripe-Signature": sign(body, secret or self.webhook_secret, timestamp),
        }
        return body.encode(), headers

    def deliver(self, event: dict) -> int | None:
        """Send one delivery of `event` now; returns our endpoint's status (None: no answer)."""
        body, headers = self.signed(event)
        status: int | None
        if self.webhook_sender is not None:
            status = self.webhook_sender(body, headers)
        elif self.webhook_url:
            request = urllib.request.Request(self.webhook_url, body, headers, method="POST")
            try:
                with urllib.request.urlopen(request, timeout=30) as response:
                    status = response.status
            except urllib.error.HTTPError as exc:
                status = exc.code
            except OSError:
                status = None
        else:
            status = None
        with self.lock:
            self.deliveries.append(Delivery(event["id"], event["type"], status))
        return status

    # --- what a customer (or Stripe's dashboard) does -----------------------------------
    def pay(self, session_id: str, *, async_payment: bool = False) -> dict:
        """The customer pays on the hosted page. With `async_payment` the session completes
        unpaid (a bank debit still processing): `settle_async` decides it later."""
        with self.lock:
            session = self.sessions[session_id]
            if session["status"] != "open":
                raise ValueError(f"session {session_id} is {session['status']}")
            intent = self._intent_for(session, succeeded=not async_payment)
            session["status"] = "complete"
            session["payment_status"] = "unpaid" if async_payment else "paid"
            session["payment_intent"] = intent["id"]
            session["customer"] = intent["customer"]
            snapshot = dict(session)
            intent_snapshot = dict(intent)
        self.emit("checkout.session.completed", snapshot)
        if self.checkout_emits_payment_intent_events and not async_payment:
            self.emit("payment_intent.succeeded", intent_snapshot)
        return snapshot

    def set_card(self, payment_method_id: str, outcome: str) -> None:
        """What off-session charges of this saved card do from now on."""
        if outcome not in ("succeed", "decline", "authentication_required"):
            raise ValueError(outcome)
        with self.lock:
            self.card_outcomes[payment_method_id] = outcome

    def settle_async(self, session_id: str, *, succeeded: bool) -> dict:
        with self.lock:
            session = self.sessions[session_id]
            intent = self.payment_intents[session["payment_intent"]]
            if succeeded:
                session["payment_status"] = "paid"
                intent["status"] = "succeeded"
                intent["latest_charge"] = self._charge_for(intent)["id"]
            else:
                intent["status"] = "requires_payment_method"
            snapshot = dict(session)
        kind = "succeeded" if succeeded else "failed"
        self.emit(f"checkout.session.async_payment_{kind}", snapshot)
        return snapshot

    def expire(self, session_id: str) -> dict:
        """Stripe expires an open session (24 hours on, or by API)."""
        with self.lock:
            session = self.sessions[session_id]
            session["status"] = "expired"
            snapshot = dict(session)
        self.emit("checkout.session.expired", snapshot)
        return snapshot

    def dashboard_refund(self, charge_id: str, amount: int | None = None) -> dict:
        """A refund made by hand in Stripe's dashboard (not through our API)."""
        with self.lock:
            refund = self._refund(self.charges[charge_id], amount, {})
            charge = dict(self.charges[charge_id])
        self.emit("charge.refunded", charge)
        return refund

    def fail_refund(self, refund_id: str, reason: str = "expired_or_canceled_card") -> dict:
        """A refund that fails after Stripe accepted it: the money comes back to the account.
        Sent as Stripe sends it, `charge.refund.updated` and `refund.failed`."""
        with self.lock:
            refund = self.refunds[refund_id]
            refund.update(status="failed", failure_reason=reason)
            charge = self.charges[refund["charge"]]
            charge["amount_refunded"] -= refund["amount"]
            charge["refunded"] = False
            snapshot = dict(refund)
        self.emit("charge.refund.updated", snapshot)
        self.emit("refund.failed", snapshot)
        return snapshot

    def open_dispute(self, charge_id: str, amount: int | None = None) -> dict:
        with self.lock:
            charge = self.charges[charge_id]
            dispute = {
                "id": self._id("dp"),
                "object": "dispute",
                "amount": charge["amount"] if amount is None else amount,
                "currency": charge["currency"],
                "charge": charge_id,
                "payment_intent": charge["payment_intent"],
                "reason": "fraudulent",
                "status": "needs_response",
                "created": int(time.time()),
                "livemode": False,
            }
            charge["disputed"] = True
            self.disputes[dispute["id"]] = dispute
            snapshot = dict(dispute)
        self.emit("charge.dispute.created", snapshot)
        return snapshot

    def close_dispute(self, dispute_id: str, *, won: bool) -> dict:
        with self.lock:
            dispute = self.disputes[dispute_id]
            dispute["status"] = "won" if won else "lost"
            snapshot = dict(dispute)
        self.emit("charge.dispute.closed", snapshot)
        return snapshot

    # --- the API ---------------------------------------------------------------------------
    def dispatch(self, request: Request) -> Reply:
        path = request.path
        if path.startswith("/pay/"):
            return self._hosted_page(request)
        if not path.startswith("/v1/"):
            return stripe_error(404, "invalid_request_error", f"Unrecognized request URL ({path}).")
        if request.headers.get("authorization") != f"Bearer {self.api_key}":
            return stripe_error(
                401, "invalid_request_error", "Invalid API Key provided.", "api_key_invalid"
            )
        key = request.headers.get("idempotency-key")
        if request.method == "POST" and key:
            return self._idempotent_call(key, request)
        return self._route(request)

    def _idempotent_call(self, key: str, request: Request) -> Reply:
        params = request_params(request)
        fingerprint = f"{request.method} {request.path}"
        with self.lock:
            key_lock = self._key_locks.setdefault(key, threading.Lock())
        with key_lock:  # one request per key at a time; the first answer is kept
            stored = self._idempotent.get(key)
            if stored is not None:
                if stored[0] != fingerprint or stored[1] != params:
                    return stripe_error(
                        400,
                        "idempotency_error",
                        "Keys for idempotent requests can only be used with the same "
                        "parameters they were first used with.",
                        "idempotency_key_in_use",
                    )
                replay = stored[2]
                return Reply(replay.status, replay.body, headers={"Idempotent-Replayed": "true"})
            self._fault.injected = False
            reply = self._route(request)
            if not self._fault.injected:  # a fail() switch plays the network: nothing stored
                self._idempotent[key] = (fingerprint, params, reply)
            return reply

    def _step(self, step: str) -> Reply | None:
        failure = self._switches(step)
        if failure is not None:
            self._fault.injected = True
        return failure

    def _route(self, request: Request) -> Reply:
        path, method = request.path[len("/v1") :], request.method
        params = request_params(request)
        if path == "/checkout/sessions" and method == "POST":
            return self._step("create_session") or self._create_session(params)
        if path == "/checkout/sessions" and method == "GET":
            return self._step("list_sessions") or self._list_sessions(params)
        match = re.fullmatch(r"/checkout/sessions/(cs_\w+)(/expire)?", path)
        if match and method == "GET" and not match[2]:
            return self._step("retrieve_session") or self._retrieve_session(match[1], params)
        if match and method == "POST" and match[2]:
            return self._step("expire_session") or self._expire_by_api(match[1])
        if path == "/refunds" and method == "POST":
            return self._step("create_refund") or self._create_refund(params)
        if path == "/refunds" and method == "GET":
            return self._step("list_refunds") or self._list_refunds(params)
        if path == "/payment_intents" and method == "POST":
            return self._step("create_payment_intent") or self._create_payment_intent(params)
        if path == "/payment_intents" and method == "GET":
            return self._step("list_payment_intents") or self._list_payment_intents(params)
        match = re.fullmatch(r"/(payment_intents|customers|payment_methods)/(\w+)", path)
        if match and method == "GET":
            table = {
                "payment_intents": self.payment_intents,
                "customers": self.customers,
                "payment_methods": self.payment_methods,
            }[match[1]]
            with self.lock:
                found = table.get(match[2])
                return Reply(200, dict(found)) if found else missing(match[1][:-1], match[2])
        match = re.fullmatch(r"/charges/(ch_\w+)", path)
        if match and method == "GET":
            charge = self.charges.get(match[1])
            return Reply(200, charge) if charge else missing("charge", match[1])
        return stripe_error(
            404, "invalid_request_error", f"Unrecognized request URL ({method}: {request.path})."
        )

    def _id(self, prefix: str) -> str:
        return f"{prefix}_test_{next(self._serial):06d}{secrets.token_hex(8)}"

    def _create_session(self, params: dict) -> Reply:
        if params.get("mode") != "payment":
            return stripe_error(
                400, "invalid_request_error", "Only mode=payment is supported here.", param="mode"
            )
        try:
            items = params["line_items"]
            amount = sum(
                int(item["price_data"]["unit_amount"]) * int(item.get("quantity", 1))
                for item in items
            )
            currency = items[0]["price_data"]["currency"]
        except (KeyError, ValueError, IndexError, TypeError):
            return stripe_error(
                400, "invalid_request_error", "Invalid line_items.", "parameter_invalid_empty"
            )
        for name in ("success_url", "cancel_url"):
            if not params.get(name):
                return stripe_error(
                    400,
                    "invalid_request_error",
                    f"Missing required param: {name}.",
                    "parameter_missing",
                    param=name,
                )
        session_id = self._id("cs")
        now = int(time.time())
        session = {
            "id": session_id,
            "object": "checkout.session",
            "mode": "payment",
            "status": "open",
            "payment_status": "unpaid",
            "amount_subtotal": amount,
            "amount_total": amount,
            "currency": currency,
            "client_reference_id": params.get("client_reference_id"),
            "customer": None,
            "customer_email": params.get("customer_email"),
            "metadata": params.get("metadata") or {},
            "payment_intent": None,
            "payment_intent_data": params.get("payment_intent_data") or {},
            "success_url": params["success_url"],
            "cancel_url": params["cancel_url"],
            "url": f"{self.url}/pay/{session_id}",
            "created": now,
            "expires_at": now + 24 * 3600,
            "livemode": False,
        }
        with self.lock:
            self.sessions[session_id] = session
        return Reply(200, self._public_session(session))

    def _public_session(self, session: dict, expand: list[str] = ()) -> dict:
        shown = {k: v for k, v in session.items() if k != "payment_intent_data"}
        if "payment_intent" in expand or "payment_intent.latest_charge" in expand:
            intent = self.payment_intents.get(session["payment_intent"] or "")
            if intent is not None:
                intent = dict(intent)
                if "payment_intent.latest_charge" in expand and intent["latest_charge"]:
                    intent["latest_charge"] = self.charges[intent["latest_charge"]]
                shown["payment_intent"] = intent
        return shown

    def _retrieve_session(self, session_id: str, params: dict) -> Reply:
        with self.lock:
            session = self.sessions.get(session_id)
            if session is None:
                return missing("checkout.session", session_id)
            return Reply(200, self._public_session(session, params.get("expand") or []))

    def _list_sessions(self, params: dict) -> Reply:
        return self._list(
            "checkout.session", "/v1/checkout/sessions", self.sessions, params, self._public_session
        )

    def _list(
        self,
        kind: str,
        url: str,
        objects: dict[str, dict],
        params: dict,
        public: Callable[[dict], dict] = dict,
    ) -> Reply:
        """The list object at `url` of `objects` (`kind`s), newest first: `created[gte]` /
        `created[lte]`, the `starting_after` cursor and `limit` (10 by default, at most 100)."""
        created = params.get("created") or {}
        limit = min(int(params.get("limit") or 10), 100)
        after = params.get("starting_after")
        with self.lock:
            rows = sorted(objects.values(), key=lambda o: o["id"], reverse=True)
            rows.sort(key=lambda o: o["created"], reverse=True)  # newest first, stable by id
            if "gte" in created:
                rows = [o for o in rows if o["created"] >= int(created["gte"])]
            if "lte" in created:
                rows = [o for o in rows if o["created"] <= int(created["lte"])]
            if after:
                ids = [o["id"] for o in rows]
                if after not in ids:
                    return missing(kind, after)
                rows = rows[ids.index(after) + 1 :]
            page = [public(o) for o in rows[:limit]]
        return Reply(
            200,
            {"object": "list", "url": url, "has_more": len(rows) > limit, "data": page},
        )

    def _expire_by_api(self, session_id: str) -> Reply:
        with self.lock:
            session = self.sessions.get(session_id)
            if session is None:
                return missing("checkout.session", session_id)
            if session["status"] != "open":
                return stripe_error(
                    400,
                    "invalid_request_error",
                    f"Only Checkout Sessions with a status of open can be expired. "
                    f"This one is {session['status']}.",
                )
        return Reply(200, self._public_session(self.expire(session_id)))

    def _saved_card(self, email: str | None) -> tuple[dict, dict]:
        """A customer and a card payment method attached to it (what Checkout saves)."""
        customer = {"id": self._id("cus"), "object": "customer", "email": email}
        method = {
            "id": self._id("pm"),
            "object": "payment_method",
            "type": "card",
            "customer": customer["id"],
            "card": {"brand": "visa", "last4": "4242", "exp_month": 12, "exp_year": 2030},
        }
        self.customers[customer["id"]] = customer
        self.payment_methods[method["id"]] = method
        return customer, method

    def _intent_for(self, session: dict, *, succeeded: bool) -> dict:
        customer, method = self._saved_card(session.get("customer_email"))
        intent = {
            "id": self._id("pi"),
            "object": "payment_intent",
            "amount": session["amount_total"],
            "amount_received": session["amount_total"] if succeeded else 0,
            "currency": session["currency"],
            "customer": customer["id"],
            "payment_method": method["id"],
            "setup_future_usage": session["payment_intent_data"].get("setup_future_usage"),
            "off_session": None,
            "metadata": session["payment_intent_data"].get("metadata") or {},
            "status": "succeeded" if succeeded else "processing",
            "latest_charge": None,
            "last_payment_error": None,
            "created": int(time.time()),
        }
        self.payment_intents[intent["id"]] = intent
        if succeeded:
            intent["latest_charge"] = self._charge_for(intent)["id"]
        return intent

    def _charge_for(self, intent: dict) -> dict:
        charge_id = self._id("ch")
        charge = {
            "id": charge_id,
            "object": "charge",
            "amount": intent["amount"],
            "amount_captured": intent["amount"],
            "amount_refunded": 0,
            "currency": intent["currency"],
            "customer": intent["customer"],
            "payment_intent": intent["id"],
            "payment_method": intent["payment_method"],
            "paid": True,
            "refunded": False,
            "disputed": False,
            "status": "succeeded",
            "metadata": intent["metadata"],
            "receipt_url": f"{self.url}/receipts/{charge_id}",
            "refunds": {
                "object": "list",
                "url": f"/v1/charges/{charge_id}/refunds",
                "has_more": False,
                "data": [],
            },
            "created": int(time.time()),
        }
        self.charges[charge_id] = charge
        return charge

    def _create_payment_intent(self, params: dict) -> Reply:
        """An off-session charge of a saved card (confirm=true): succeeded, or a 402
        card_error carrying the PaymentIntent (back to requires_payment_method)."""
        try:
            amount = int(params["amount"])
        except (KeyError, ValueError):
            return stripe_error(400, "invalid_request_error", "Missing amount.", param="amount")
        with self.lock:
            method = self.payment_methods.get(params.get("payment_method") or "")
            if method is None:
                return missing("payment_method", params.get("payment_method") or "")
            if params.get("customer") != method["customer"]:
                return stripe_error(
                    400,
                    "invalid_request_error",
                    "The provided PaymentMethod is not attached to this customer.",
                    param="payment_method",
                )
            intent = {
                "id": self._id("pi"),
                "object": "payment_intent",
                "amount": amount,
                "amount_received": 0,
                "currency": params.get("currency"),
                "customer": method["customer"],
                "payment_method": method["id"],
                "setup_future_usage": None,
                "off_session": params.get("off_session") == "true",
                "metadata": params.get("metadata") or {},
                "status": "requires_confirmation",
                "latest_charge": None,
                "last_payment_error": None,
                "created": int(time.time()),
            }
            self.payment_intents[intent["id"]] = intent
            if params.get("confirm") != "true":
                return Reply(200, dict(intent))
            outcome = self.card_outcomes.get(method["id"], "succeed")
            if outcome == "succeed":
                intent["status"] = "succeeded"
                intent["amount_received"] = amount
                intent["latest_charge"] = self._charge_for(intent)["id"]
                snapshot = dict(intent)
            else:
                code = "card_declined" if outcome == "decline" else "authentication_required"
                message = (
                    "Your card was declined."
                    if outcome == "decline"
                    else "This payment requires the customer to authenticate."
                )
                intent["status"] = "requires_payment_method"
                intent["last_payment_error"] = {"type": "card_error", "code": code}
                snapshot = dict(intent)
        if intent["status"] == "succeeded":
            self.emit("payment_intent.succeeded", snapshot)
            return Reply(200, snapshot)
        self.emit("payment_intent.payment_failed", snapshot)
        return Reply(
            402,
            {
                "error": {
                    "type": "card_error",
                    "code": code,
                    "decline_code": "generic_decline" if outcome == "decline" else None,
                    "message": message,
                    "payment_intent": snapshot,
                }
            },
        )

    def _list_payment_intents(self, params: dict) -> Reply:
        return self._list("payment_intent", "/v1/payment_intents", self.payment_intents, params)

    def _refund(self, charge: dict, amount: int | None, metadata: dict) -> dict:
        remaining = charge["amount"] - charge["amount_refunded"]
        amount = remaining if amount is None else amount
        if amount <= 0 or amount > remaining:
            raise ValueError("amount exceeds what is left of the charge")
        refund = {
            "id": self._id("re"),
            "object": "refund",
            "amount": amount,
            "charge": charge["id"],
            "payment_intent": charge["payment_intent"],
            "currency": charge["currency"],
            "metadata": metadata,
            "status": "succeeded",
            "created": int(time.time()),
        }
        self.refunds[refund["id"]] = refund
        charge["amount_refunded"] += amount
        charge["refunded"] = charge["amount_refunded"] == charge["amount"]
        charge["refunds"]["data"].insert(0, refund)
        return refund

    def _create_refund(self, params: dict) -> Reply:
        with self.lock:
            charge_id = params.get("charge")
            if not charge_id and params.get("payment_intent"):
                intent = self.payment_intents.get(params["payment_intent"])
                if intent is None:
                    return missing("payment_intent", params["payment_intent"])
                charge_id = intent["latest_charge"]
            charge = self.charges.get(charge_id or "")
            if charge is None:
                return missing("charge", charge_id or "")
            if self._refund_refusals:
                return stripe_error(
                    400,
                    "invalid_request_error",
                    self._refund_refusals.pop(),
                    "charge_not_refundable",
                    param="charge",
                )
            amount = int(params["amount"]) if params.get("amount") else None
            try:
                refund = self._refund(charge, amount, params.get("metadata") or {})
            except ValueError:
                return stripe_error(
                    400,
                    "invalid_request_error",
                    f"Refund amount is greater than the unrefunded amount on charge {charge_id}.",
                    "amount_too_large",
                    param="amount",
                )
            snapshot = dict(charge)
        self.emit("charge.refunded", snapshot)
        return Reply(200, refund)

    def _list_refunds(self, params: dict) -> Reply:
        charge_id = params.get("charge")
        with self.lock:
            rows = [r for r in self.refunds.values() if not charge_id or r["charge"] == charge_id]
            rows.sort(key=lambda r: r["id"], reverse=True)
        return Reply(200, {"object": "list", "url": "/v1/refunds", "has_more": False, "data": rows})

    # --- the hosted checkout page --------------------------------------------------------
    def _hosted_page(self, request: Request) -> Reply:
        match = re.fullmatch(r"/pay/(cs_\w+)(/pay|/cancel)?", request.path)
        session = self.sessions.get(match[1]) if match else None
        if session is None:
            return Reply(404, "<h1>No such checkout session</h1>", "text/html; charset=utf-8")
        action = match[2]
        if request.method == "GET" and not action:
            return Reply(200, self._page_html(session), "text/html; charset=utf-8")
        if request.method == "POST" and action == "/pay":
            if session["status"] == "open":
                self.pay(session["id"])
            target = session["success_url"]
        elif request.method == "POST" and action == "/cancel":
            target = session["cancel_url"]
        else:
            return Reply(405, "<h1>Method not allowed</h1>", "text/html; charset=utf-8")
        location = target.replace("{CHECKOUT_SESSION_ID}", session["id"])
        return Reply(303, None, headers={"Location": location})

    def _page_html(self, session: dict) -> str:
        amount = html.escape(format_pence(session["amount_total"]))
        base = f"/pay/{session['id']}"
        if session["status"] != "open":
            body = f"<p>This checkout session is {html.escape(session['status'])}.</p>"
        else:
            body = (
                f'<form method="post" action="{base}/pay"><button id="pay">Pay {amount}'
                f'</button></form><form method="post" action="{base}/cancel">'
                '<button id="cancel">Cancel</button></form>'
            )
        return (
            "<!doctype html><html><head><meta charset='utf-8'><title>Stripe sandbox checkout"
            f"</title></head><body><h1>Sandbox checkout</h1><p>Voxanne wallet top-up: "
            f"<strong id='amount'>{amount}</strong></p>{body}"
            "<p><small>A local Stripe double: no card is charged.</small></p></body></html>"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description="Run the Stripe double on 127.0.0.1.")
    parser.add_argument("--port", type=int, default=12111)
    parser.add_argument("--webhook-url", required=True)
    parser.add_argument("--api-key", default=API_KEY)
    parser.add_argument("--webhook-secret", default=WEBHOOK_SECRET)
    args = parser.parse_args()
    double = StripeDouble(
        api_key=args.api_key, webhook_secret=args.webhook_secret, webhook_url=args.webhook_url
    ).start(args.port)
    print(f"stripe double on {double.url}, webhooks to {args.webhook_url}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        double.stop()


if __name__ == "__main__":
    main()
