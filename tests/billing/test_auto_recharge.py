"""Auto-recharge: a debit that leaves the balance below the threshold charges the saved card
off-session, once, through the Stripe double (its webhooks come back from the double's own
threads, as Stripe's do, so these tests commit for real)."""

from __future__ import annotations

import json
import time

import pytest
from django.core import mail
from django.core.management import call_command
from django.db import transaction

from billing import services
from billing.models import (
    AutoRecharge,
    EntryType,
    LedgerEntry,
    RechargeAttempt,
    RechargeState,
    TopUp,
    Wallet,
    WebhookEvent,
)
from sandbox.server import Reply
from tests.billing.concurrently import run_at_once
from tests.billing.conftest import assert_books_balance, balance, new_topup
from tests.factories import auth_header, charge, make_org

pytestmark = pytest.mark.django_db(transaction=True)

URL = "/api/billing/wallet/auto-recharge"
STRIPE_DOWN = Reply(503, {"error": {"type": "api_error", "message": "Stripe is down"}})


@pytest.fixture
def cards(stripe_double, celery_eager):
    """The Stripe double with tasks run inline: a debit's recharge happens before it returns."""
    return stripe_double


def put(api, org, **body):
    settings_body = {"enabled": True, "threshold_pence": 1000, "amount_pence": 2500, **body}
    return api.generic(
        "PUT", URL, json.dumps(settings_body), content_type="application/json", **auth_header(org)
    )


def clinic_with_card(api, double, *, topup: int = 2500, **settings_body):
    """A clinic that paid a Checkout top-up (its card saved) and turned auto-recharge on."""
    org = make_org("Smile Dental")
    paid = new_topup(api, org, topup)
    double.pay(paid.stripe_session_id)
    response = put(api, org, **settings_body)
    assert response.status_code == 200, response.content
    return org


def recharge_credits(org) -> list[int]:
    entries = LedgerEntry.objects.filter(org=org, idempotency_key__startswith="recharge:")
    return list(entries.values_list("amount_pence", flat=True))


def off_session_intents(double) -> list[dict]:
    with double.lock:
        return [dict(i) for i in double.payment_intents.values() if i["off_session"]]


def saved_card(org) -> str:
    return AutoRecharge.objects.get(org=org).stripe_payment_method_id


# --- Settings ------------------------------------------------------------------------------


def test_enabling_needs_the_card_of_a_paid_checkout_top_up(api, cards):
    org = make_org()
    response = put(api, org)
    assert response.status_code == 400
    assert "saved card" in response.json()["error"]
    paid = new_topup(api, org, 2500)
    cards.pay(paid.stripe_session_id)
    response = put(api, org)
    assert response.status_code == 200
    body = response.json()
    assert body["enabled"] is True and body["has_payment_method"] is True
    assert body["paused_reason"] is None
    intent = cards.payment_intents[TopUp.objects.get(pk=paid.pk).payment_intent_id]
    rules = AutoRecharge.objects.get(org=org)
    assert rules.stripe_payment_method_id == intent["payment_method"]
    assert rules.stripe_customer_id == intent["customer"]
    wallet = api.get("/api/billing/wallet", **auth_header(org)).json()
    assert wallet["auto_recharge_enabled"] is True and wallet["has_payment_method"] is True


@pytest.mark.parametrize(
    "body",
    [
        {"threshold_pence": 499},
        {"amount_pence": 2499},
        {"amount_pence": 100001},
        {"amount_pence": "2500"},
        {"enabled": "yes"},
        {"threshold_pence": 1000.5},
    ],
)
def test_bad_settings_are_a_400_with_a_sentence(api, cards, body):
    org = make_org()
    response = put(api, org, **body)
    assert response.status_code == 400
    assert isinstance(response.json()["error"], str)
    assert not AutoRecharge.objects.filter(org=org).exists()


def test_a_get_before_any_settings_shows_it_off(api, cards):
    body = api.get(URL, **auth_header(make_org())).json()
    assert body["enabled"] is False and body["has_payment_method"] is False


# --- Recharging ----------------------------------------------------------------------------


def test_a_debit_crossing_the_threshold_makes_one_recharge_and_one_credit(api, cards):
    org = clinic_with_card(api, cards)  # 2500
    charge(org, 1000)  # 1500: above the threshold
    assert off_session_intents(cards) == []
    charge(org, 600)  # 900: below
    (intent,) = off_session_intents(cards)
    assert intent["amount"] == 2500 and intent["payment_method"] == saved_card(org)
    assert recharge_credits(org) == [2500]
    assert balance(org) == 900 + 2500
    (attempt,) = RechargeAttempt.objects.filter(org=org)
    assert attempt.state == RechargeState.SUCCEEDED and attempt.payment_intent_id == intent["id"]
    assert cards._idempotent.get(f"recharge:{attempt.pk}") is not None  # its own key
    # The payment_intent.succeeded webhook came too: processed, no second credit.
    event = WebhookEvent.objects.get(type="payment_intent.succeeded")
    assert event.outcome == "processed"
    assert_books_balance(org)
    assert [m for m in mail.outbox if "wallet is low" in m.subject] == []


def test_no_second_recharge_while_one_is_in_flight_and_stripe_down_is_retried_once(api, cards):
    org = clinic_with_card(api, cards)
    cards.fail("create_payment_intent", STRIPE_DOWN, times=-1)
    charge(org, 2100)  # 400: the attempt goes in flight, Stripe does not answer
    charge(org, 100)  # 300: one is in flight, no second one
    (attempt,) = RechargeAttempt.objects.filter(org=org)
    assert attempt.state == RechargeState.IN_FLIGHT
    assert off_session_intents(cards) == [] and recharge_credits(org) == []
    # Below the low-balance line too, but a recharge is in flight: no alarm.
    assert [m for m in mail.outbox if "wallet is low" in m.subject] == []
    cards.heal()
    RechargeAttempt.objects.filter(pk=attempt.pk).update(lease_until=attempt.created_at)
    call_command("reconcile_topups")  # the hourly reconciler retries it, same key
    call_command("reconcile_topups")
    charge(org, 100)  # and a later debit does not charge again either (balance is fine)
    assert len(off_session_intents(cards)) == 1
    assert recharge_credits(org) == [2500]
    attempt.refresh_from_db()
    assert attempt.state == RechargeState.SUCCEEDED
    assert RechargeAttempt.objects.filter(org=org).count() == 1


def test_no_recharge_past_the_daily_cap_counted_over_a_rolling_day(api, cards):
    org = clinic_with_card(api, cards)
    charge(org, 1600)  # 900 -> 3400
    charge(org, 2500)  # 900 -> 3400
    charge(org, 2500)  # 900 -> 3400
    assert recharge_credits(org) == [2500] * 3
    charge(org, 2500)  # 900: the cap (3 in 24 hours) says no
    assert recharge_credits(org) == [2500] * 3 and balance(org) == 900
    assert RechargeAttempt.objects.filter(org=org).count() == 3
    oldest = RechargeAttempt.objects.filter(org=org).order_by("created_at").first()
    RechargeAttempt.objects.filter(pk=oldest.pk).update(
        created_at=oldest.created_at.replace(year=oldest.created_at.year - 1)
    )
    charge(org, 100)  # a day later (the oldest left the window): one more is allowed
    assert recharge_credits(org) == [2500] * 4


def test_two_concurrent_debits_crossing_together_make_one_recharge(api, cards):
    org = clinic_with_card(api, cards, topup=2500, threshold_pence=2000)

    def spend(index: int):
        return charge(org, 600 + index * 100)  # 1900 and 1200 or 1800 and 1200: both below

    results = run_at_once(spend, threads=2)
    assert not [r for r in results if isinstance(r, Exception)], results
    assert len(off_session_intents(cards)) == 1
    assert recharge_credits(org) == [2500]
    assert RechargeAttempt.objects.filter(org=org).count() == 1
    assert balance(org) == 2500 - 600 - 700 + 2500
    assert_books_balance(org)


def test_authentication_required_pauses_keeps_enabled_and_emails_a_checkout_link(api, cards):
    org = clinic_with_card(api, cards)
    cards.set_card(saved_card(org), "authentication_required")
    charge(org, 1600)
    (attempt,) = RechargeAttempt.objects.filter(org=org)
    assert attempt.state == RechargeState.FAILED
    assert attempt.error_code == "authentication_required"
    body = api.get(URL, **auth_header(org)).json()
    assert body["enabled"] is True
    assert body["paused_reason"].startswith("authentication_required")
    (email,) = [m for m in mail.outbox if "Auto-recharge is paused" in m.subject]
    assert email.to == [org.owner.email]
    assert f"{cards.url}/pay/cs_" in email.body
    assert f"{cards.url}/pay/cs_" in email.alternatives[0][0]
    charge(org, 100)  # paused: no attempt at all
    assert RechargeAttempt.objects.filter(org=org).count() == 1
    assert recharge_credits(org) == []
    cards.set_card(saved_card(org), "succeed")
    assert put(api, org).status_code == 200  # saving again clears the pause...
    assert api.get(URL, **auth_header(org)).json()["paused_reason"] is None
    assert recharge_credits(org) == [2500]  # ...and, below the threshold, recharges at once


def test_a_declined_card_pauses_too(api, cards):
    org = clinic_with_card(api, cards)
    cards.set_card(saved_card(org), "decline")
    charge(org, 1600)
    rules = AutoRecharge.objects.get(org=org)
    assert rules.enabled and rules.paused_reason.startswith("card_declined")
    assert Wallet.objects.get(org=org).auto_recharge_below_pence is None
    assert len([m for m in mail.outbox if "Auto-recharge is paused" in m.subject]) == 1


def test_a_lost_answer_and_a_lost_webhook_are_credited_once_by_the_reconciler(api, cards, settings):
    org = clinic_with_card(api, cards)
    settings.PROVIDER_TIMEOUT_SECONDS = 1
    cards.delay_step("create_payment_intent", 7)  # Stripe charges, but after we gave up
    cards.drop()  # and its webhook never arrives
    charge(org, 1600)
    assert recharge_credits(org) == []
    deadline = time.monotonic() + 20
    while not off_session_intents(cards) and time.monotonic() < deadline:
        time.sleep(0.2)
    (intent,) = off_session_intents(cards)
    assert intent["status"] == "succeeded"
    cards.heal()
    call_command("reconcile_topups")
    call_command("reconcile_topups")
    assert recharge_credits(org) == [2500]
    assert RechargeAttempt.objects.get(org=org).state == RechargeState.SUCCEEDED
    assert_books_balance(org)


def test_a_refund_of_a_recharge_debits_the_wallet_like_a_top_up_refund(api, cards):
    org = clinic_with_card(api, cards)
    charge(org, 1600)
    recharge = TopUp.objects.get(org=org, idempotency_key__startswith="recharge:")
    assert recharge.charge_id
    cards.dashboard_refund(recharge.charge_id, 1000)
    refunds = LedgerEntry.objects.filter(org=org, type=EntryType.CARD_REFUND)
    assert list(refunds.values_list("amount_pence", flat=True)) == [-1000]
    recharge.refresh_from_db()
    assert recharge.status == "partially_refunded"
    assert_books_balance(org)


def test_a_checkout_payment_intent_event_does_not_credit_twice(api, cards):
    cards.checkout_emits_payment_intent_events = True
    org = make_org()
    paid = new_topup(api, org, 2500)
    cards.pay(paid.stripe_session_id)
    entries = LedgerEntry.objects.filter(org=org, type=EntryType.TOPUP)
    assert list(entries.values_list("amount_pence", flat=True)) == [2500]
    event = WebhookEvent.objects.get(type="payment_intent.succeeded")
    assert event.outcome == "ignored" and "not an auto-recharge" in event.error


def test_a_frozen_wallet_is_not_recharged(api, cards):
    org = clinic_with_card(api, cards)
    with transaction.atomic():
        services.freeze_wallet(org=org, reason="dispute")
    charge(org, 1600)
    assert RechargeAttempt.objects.filter(org=org).count() == 0


def test_support_sees_why_auto_recharge_is_paused_on_the_clinic_page(api, cards, client):
    from tests.factories import make_support_user

    org = clinic_with_card(api, cards)
    cards.set_card(saved_card(org), "decline")
    charge(org, 1600)
    client.force_login(make_support_user(superuser=True))
    html = client.get(f"/admin/voxanne/organization/{org.pk}/change/").content.decode()
    assert "Auto-recharge attempts" in html and "card_declined" in html
    assert "Your card was declined" in html
