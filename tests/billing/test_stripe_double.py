"""sandbox/stripe.py speaks Stripe's wire format: driven here through the official SDK."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
import stripe

from billing import stripe as payments
from sandbox.stripe import Reply, stripe_error


@pytest.fixture(autouse=True)
def _webhooks_go_nowhere(stripe_double):
    """These tests are about the double alone: its webhooks are answered 200 here."""
    stripe_double.webhook_sender = lambda body, headers: 200


def _session(key: str = "checkout:1", amount: int = 2500) -> payments.CheckoutSession:
    return payments.create_checkout_session(
        amount_pence=amount,
        org_id="org-1",
        topup_id="topup-1",
        success_url="http://127.0.0.1:8000/ok/{CHECKOUT_SESSION_ID}",
        cancel_url="http://127.0.0.1:8000/cancelled",
        idempotency_key=key,
    )


def test_a_session_is_created_from_nested_form_parameters(stripe_double):
    session = _session()
    stored = stripe_double.sessions[session.id]
    assert stored["amount_total"] == 2500 and stored["currency"] == "gbp"
    assert stored["metadata"] == {"topup_id": "topup-1", "org_id": "org-1"}
    assert stored["payment_intent_data"]["setup_future_usage"] == "off_session"
    assert session.url.startswith(stripe_double.url + "/pay/cs_")
    assert (session.status, session.payment_status, session.topup_id) == (
        "open",
        "unpaid",
        "topup-1",
    )


def test_the_same_idempotency_key_replays_the_first_session(stripe_double):
    first, again = _session("k1"), _session("k1")
    assert first.id == again.id and len(stripe_double.sessions) == 1


def test_an_idempotency_key_reused_with_other_parameters_is_refused(stripe_double):
    _session("k1", 2500)
    with pytest.raises(payments.PaymentProviderRefused) as caught:
        _session("k1", 5000)
    assert caught.value.status == 400


def test_a_wrong_key_is_not_configured_and_a_missing_session_is_refused(stripe_double, settings):
    with pytest.raises(payments.PaymentProviderRefused) as missing:
        payments.retrieve_checkout_session("cs_test_nope")
    assert missing.value.status == 404 and missing.value.code == "resource_missing"
    settings.STRIPE_SECRET_KEY = "sk_test_wrong"
    with pytest.raises(payments.NotConfigured):
        payments.retrieve_checkout_session("cs_test_nope")


def test_stripe_errors_are_transient_and_a_retried_create_reuses_its_key(stripe_double):
    stripe_double.fail("create_session", stripe_error(500, "api_error", "boom"), times=1)
    session = _session("k-retry")  # the SDK's retry gets through, with the same key
    assert stripe_double.calls["create_session"] == 2 and len(stripe_double.sessions) == 1
    stripe_double.fail("create_session", stripe_error(500, "api_error", "down"), times=-1)
    with pytest.raises(payments.PaymentProviderUnavailable):
        _session("k-other")
    assert session.id in stripe_double.sessions


def test_paying_expands_the_charge_with_its_receipt(stripe_double):
    session = _session()
    stripe_double.pay(session.id)
    paid = payments.retrieve_checkout_session(session.id)
    assert (paid.status, paid.payment_status) == ("complete", "paid")
    assert paid.payment_intent_id.startswith("pi_") and paid.charge_id.startswith("ch_")
    assert paid.receipt_url.endswith(paid.charge_id)


def test_sessions_are_listed_newest_first_across_pages(stripe_double, settings):
    ids = [_session(f"k{i}").id for i in range(5)]
    client = stripe.StripeClient(
        settings.STRIPE_SECRET_KEY, base_addresses={"api": settings.STRIPE_API_BASE}
    )
    first = client.v1.checkout.sessions.list({"limit": 2})
    assert first.has_more and len(first.data) == 2
    everything = [s.id for s in first.auto_paging_iter()]
    assert sorted(everything) == sorted(ids) and len(everything) == 5
    since = datetime.now(UTC) - timedelta(minutes=1)
    assert len(list(payments.list_checkout_sessions(created_since=since))) == 5
    later = datetime.now(UTC) + timedelta(minutes=1)
    assert list(payments.list_checkout_sessions(created_since=later)) == []


def test_refunds_are_listed_per_charge_and_never_exceed_it(stripe_double):
    session = _session()
    stripe_double.pay(session.id)
    charge_id = payments.retrieve_checkout_session(session.id).charge_id
    refund = payments.create_refund(
        payment_intent_id=stripe_double.sessions[session.id]["payment_intent"],
        amount_pence=1000,
        idempotency_key="refund-1",
        metadata={"why": "test"},
    )
    stripe_double.dashboard_refund(charge_id, 500)
    assert refund.status == "succeeded" and refund.charge_id == charge_id
    refunds = payments.list_refunds(charge_id=charge_id)
    assert sorted(r.amount for r in refunds) == [500, 1000]
    with pytest.raises(payments.PaymentProviderRefused):
        payments.create_refund(
            payment_intent_id=stripe_double.sessions[session.id]["payment_intent"],
            amount_pence=1001,
            idempotency_key="refund-2",
            metadata={},
        )


def test_webhooks_are_signed_as_stripe_signs_them(stripe_double):
    received = []
    stripe_double.webhook_sender = lambda body, headers: received.append((body, headers)) or 200
    session = _session()
    stripe_double.pay(session.id)
    ((body, headers),) = received
    event = payments.verify_webhook(body, headers["Stripe-Signature"])
    assert event["type"] == "checkout.session.completed"
    assert event["data"]["object"]["payment_status"] == "paid"
    with pytest.raises(payments.BadSignature):
        payments.verify_webhook(body.replace(b"paid", b"PAID"), headers["Stripe-Signature"])
    stale_body, stale = stripe_double.signed(event, timestamp=int(time.time()) - 301)
    with pytest.raises(payments.BadSignature):
        payments.verify_webhook(stale_body, stale["Stripe-Signature"])


def test_webhook_switches_duplicate_drop_hold_and_reorder(stripe_double):
    statuses = iter([500, 200, 200, 200, 200, 200, 200])
    stripe_double.webhook_sender = lambda body, headers: next(statuses)
    stripe_double.duplicate(2)
    stripe_double.pay(_session("a").id)
    assert [d.status for d in stripe_double.deliveries] == [500, 200]
    stripe_double.duplicate(1)
    stripe_double.drop(1)
    stripe_double.pay(_session("b").id)
    assert len(stripe_double.dropped) == 1 and len(stripe_double.deliveries) == 2
    stripe_double.hold()
    first, second = _session("c"), _session("d")
    stripe_double.pay(first.id)
    stripe_double.pay(second.id)
    assert len(stripe_double.deliveries) == 2
    stripe_double.release("reversed")
    delivered = [d.event_id for d in stripe_double.deliveries[2:]]
    assert delivered == [stripe_double.events[-1]["id"], stripe_double.events[-2]["id"]]


def test_the_hosted_page_pays_and_redirects_to_the_success_url(stripe_double):
    import urllib.request

    received = []
    stripe_double.webhook_sender = lambda body, headers: received.append(body) or 200
    session = _session()
    page = urllib.request.urlopen(session.url).read().decode()
    assert "£25.00" in page and "Pay" in page and "Cancel" in page

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):
            return None

    opener = urllib.request.build_opener(NoRedirect)
    with pytest.raises(urllib.error.HTTPError) as answer:
        opener.open(urllib.request.Request(session.url + "/pay", data=b"", method="POST"))
    assert answer.value.code == 303
    assert answer.value.headers["Location"] == f"http://127.0.0.1:8000/ok/{session.id}"
    assert len(received) == 1
    assert stripe_double.sessions[session.id]["payment_status"] == "paid"


def test_fail_switch_replies_are_not_kept_as_the_idempotent_answer(stripe_double):
    stripe_double.fail("create_session", Reply(503, {"error": {"type": "api_error"}}), times=3)
    with pytest.raises(payments.PaymentProviderUnavailable):
        _session("k-once")
    assert _session("k-once").id in stripe_double.sessions
