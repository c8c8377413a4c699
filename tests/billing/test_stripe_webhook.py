"""POST /api/billing/stripe/webhook: signed deliveries from the Stripe double, every event type,
duplicates, disorder, bad signatures, and a handler that fails after the inbox row."""

from __future__ import annotations

import json
import time

import pytest

from billing import services
from billing.models import Dispute, EntryType, LedgerEntry, TopUp, Wallet, WebhookEvent
from onboarding.models import OnboardingEvent
from onboarding.services import payment_abandonment
from tests.billing.conftest import (
    assert_books_balance,
    balance,
    new_topup,
    post_webhook,
    topup_credits,
)
from tests.doubles import fixtures
from tests.factories import auth_header, charge, make_abandoned_org, make_org
from tests.onboarding.conftest import statements_fail_on
from voxanne.models import Organization

pytestmark = pytest.mark.django_db
providers = fixtures.providers


def paid_topup(api, stripe_double, amount: int = 2500, org=None) -> TopUp:
    org = org or make_org()
    topup = new_topup(api, org, amount)
    stripe_double.pay(topup.stripe_session_id)
    topup.refresh_from_db()
    return topup


def test_a_paid_checkout_credits_amount_total_once_and_records_payment_success(api, stripe_double):
    org = make_abandoned_org()
    topup = paid_topup(api, stripe_double, 2500, org=org)
    assert [d.status for d in stripe_double.deliveries] == [200]
    assert (topup.status, topup.paid_pence) == ("paid", 2500)
    assert topup.payment_intent_id.startswith("pi_")
    assert topup_credits(org) == [2500] and balance(org) == 2500
    [inbox] = WebhookEvent.objects.all()
    assert (inbox.provider, inbox.type, inbox.outcome) == (
        "stripe",
        "checkout.session.completed",
        "processed",
    )
    [event] = OnboardingEvent.objects.filter(org=org, event_name="payment_success")
    assert event.metadata == {"source": "stripe", "topup_id": str(topup.pk)}
    abandoned = payment_abandonment(Organization.objects.filter(pk=org.pk))
    assert not abandoned.filter(viewed_payment_but_not_paid=True).exists()


def test_three_deliveries_of_one_event_credit_once(api, stripe_double):
    stripe_double.duplicate(3)
    topup = paid_topup(api, stripe_double)
    assert [d.status for d in stripe_double.deliveries] == [200, 200, 200]
    assert topup_credits(topup.org) == [2500]
    assert WebhookEvent.objects.count() == 1
    assert OnboardingEvent.objects.filter(event_name="payment_success").count() == 1


def test_a_completed_session_that_is_not_paid_credits_nothing(api, stripe_double):
    org = make_org()
    topup = new_topup(api, org)
    stripe_double.pay(topup.stripe_session_id, async_payment=True)
    topup.refresh_from_db()
    assert topup.status == "pending" and topup_credits(org) == []
    stripe_double.settle_async(topup.stripe_session_id, succeeded=True)
    topup.refresh_from_db()
    assert topup.status == "paid" and topup_credits(org) == [2500]


def test_an_async_payment_that_fails_marks_the_topup_failed(api, stripe_double):
    org = make_org()
    topup = new_topup(api, org)
    stripe_double.pay(topup.stripe_session_id, async_payment=True)
    stripe_double.settle_async(topup.stripe_session_id, succeeded=False)
    topup.refresh_from_db()
    assert topup.status == "failed" and balance(org) == 0


def test_metadata_cannot_make_an_unpaid_session_paid(api, stripe_double):
    org = make_org()
    topup = new_topup(api, org)
    session = dict(stripe_double.sessions[topup.stripe_session_id])
    session.update(status="complete", metadata={**session["metadata"], "amount": "100000"})
    stripe_double.emit("checkout.session.completed", session)  # payment_status still unpaid
    assert stripe_double.deliveries[-1].status == 200
    assert topup_credits(org) == []


def test_an_expired_session_marks_the_topup_expired(api, stripe_double):
    topup = new_topup(api, make_org())
    stripe_double.expire(topup.stripe_session_id)
    topup.refresh_from_db()
    assert topup.status == "expired"


def test_out_of_order_events_never_move_a_paid_topup_back(api, stripe_double):
    org = make_org()
    topup = new_topup(api, org)
    stripe_double.hold()
    stripe_double.pay(topup.stripe_session_id, async_payment=True)
    stripe_double.settle_async(topup.stripe_session_id, succeeded=True)
    assert stripe_double.release("reversed") == [200, 200]
    topup.refresh_from_db()
    assert topup.status == "paid" and topup_credits(org) == [2500]
    # An old "expired" snapshot arriving late changes nothing either.
    stale = {**stripe_double.sessions[topup.stripe_session_id], "status": "expired"}
    stale["payment_status"] = "unpaid"
    stripe_double.emit("checkout.session.expired", stale)
    topup.refresh_from_db()
    assert topup.status == "paid" and balance(org) == 2500


def test_a_paid_delivery_is_a_few_queries(api, stripe_double, django_assert_max_num_queries):
    topup = new_topup(api, make_org())
    stripe_double.hold()
    stripe_double.pay(topup.stripe_session_id)
    [event] = stripe_double.take_held()
    # 9 as the service runs: the system scope (once, TenantMiddleware), the inbox row, the
    # top-up, the wallet's lock and posting, the top-up locked and updated, payment_success,
    # the renewal check; in a test, also a savepoint, its release and the test's own scope
    # put back (14 while the view opened a scope of its own)
    with django_assert_max_num_queries(12):
        assert post_webhook(*stripe_double.signed(event)) == 200
    assert TopUp.objects.get(pk=topup.pk).status == "paid"


def test_bad_missing_and_stale_signatures_are_400_with_nothing_written(api, stripe_double):
    topup = new_topup(api, make_org())
    stripe_double.hold()
    stripe_double.pay(topup.stripe_session_id)
    [event] = stripe_double.take_held()
    body, headers = stripe_double.signed(event)
    tampered = body.replace(b'"amount_total": 2500', b'"amount_total": 99999')
    wrong_secret = stripe_double.signed(event, secret="whsec_someone_else")
    stale = stripe_double.signed(event, timestamp=int(time.time()) - 301)
    for attempt_body, attempt_headers in [
        (tampered, headers),
        (body, {}),
        (body, {"Stripe-Signature": "t=nonsense"}),
        wrong_secret,
        stale,
    ]:
        response = api.generic(
            "POST",
            "/api/billing/stripe/webhook",
            attempt_body,
            content_type="application/json",
            **(
                {"HTTP_STRIPE_SIGNATURE": attempt_headers["Stripe-Signature"]}
                if attempt_headers
                else {}
            ),
        )
        assert response.status_code == 400
        assert response.json()["error"] == "Invalid or missing Stripe signature."
    assert not WebhookEvent.objects.exists() and topup_credits(topup.org) == []
    assert post_webhook(body, headers) == 200  # the genuine one still goes through


def test_a_rotated_secret_verifies_with_either_listed_secret(api, stripe_double, settings):
    topup = new_topup(api, make_org())
    settings.STRIPE_WEBHOOK_SECRET = f"whsec_new_one,{stripe_double.webhook_secret}"
    stripe_double.pay(topup.stripe_session_id)  # still signed with the old secret
    assert stripe_double.deliveries[-1].status == 200
    [charge_id] = stripe_double.charges
    stripe_double.webhook_secret = "whsec_new_one"
    stripe_double.dashboard_refund(charge_id, 100)
    assert stripe_double.deliveries[-1].status == 200
    settings.STRIPE_WEBHOOK_SECRET = "whsec_new_one"
    stripe_double.webhook_secret = "whsec_sandbox"
    stripe_double.dashboard_refund(charge_id, 100)
    assert stripe_double.deliveries[-1].status == 400  # the old secret is retired


def test_an_unknown_event_is_stored_as_ignored(api, stripe_double):
    event = stripe_double.emit("customer.created", {"id": "cus_test_1", "object": "customer"})
    assert stripe_double.deliveries[-1].status == 200
    inbox = WebhookEvent.objects.get(event_id=event["id"])
    assert inbox.outcome == "ignored" and "not handled" in inbox.error


def test_a_failure_after_the_inbox_row_is_5xx_and_the_redelivery_credits_once(api, stripe_double):
    org = make_org()
    topup = new_topup(api, org)
    with statements_fail_on("billing_ledger_entry", "INSERT"):  # a real database error
        stripe_double.pay(topup.stripe_session_id)
        assert stripe_double.deliveries[-1].status == 500
    assert not WebhookEvent.objects.exists()  # not marked processed before it was
    topup.refresh_from_db()
    assert topup.status == "pending" and topup_credits(org) == []
    assert stripe_double.redeliver_failed() == [200]
    assert stripe_double.redeliver_failed() == []
    assert topup_credits(org) == [2500] and WebhookEvent.objects.count() == 1


def test_a_dashboard_refund_delivered_twice_is_debited_once(api, stripe_double):
    topup = paid_topup(api, stripe_double, 5000)
    [charge_id] = stripe_double.charges
    stripe_double.duplicate(2)
    stripe_double.dashboard_refund(charge_id, 2000)
    topup.refresh_from_db()
    assert (topup.status, topup.refunded_pence, topup.charge_id) == (
        "partially_refunded",
        2000,
        charge_id,
    )
    assert balance(topup.org) == 3000
    stripe_double.dashboard_refund(charge_id)  # the rest
    topup.refresh_from_db()
    assert (topup.status, topup.refunded_pence) == ("refunded", 5000)
    assert balance(topup.org) == 0
    assert_books_balance(topup.org)


def test_a_refund_of_money_already_spent_is_recorded_below_zero(api, stripe_double):
    topup = paid_topup(api, stripe_double, 2500)
    charge(topup.org, 1000)
    stripe_double.dashboard_refund(next(iter(stripe_double.charges)))
    assert balance(topup.org) == -1000
    assert_books_balance(topup.org)
    with pytest.raises(services.InsufficientFunds):
        charge(topup.org, 1)


def test_a_dispute_freezes_spending_until_it_is_won(api, stripe_double):
    topup = paid_topup(api, stripe_double, 5000)
    [charge_id] = stripe_double.charges
    dispute = stripe_double.open_dispute(charge_id)
    wallet = Wallet.objects.get(org=topup.org)
    assert wallet.frozen_at is not None and dispute["id"] in wallet.frozen_reason
    with pytest.raises(services.WalletOnHold):
        charge_hold(topup.org)
    stripe_double.close_dispute(dispute["id"], won=True)
    assert Wallet.objects.get(org=topup.org).frozen_at is None
    assert Dispute.objects.get().status == "won"
    charge_hold(topup.org)
    assert balance(topup.org) == 4000


def test_a_lost_dispute_debits_the_disputed_amount_once_and_stays_frozen(api, stripe_double):
    topup = paid_topup(api, stripe_double, 5000)
    [charge_id] = stripe_double.charges
    dispute = stripe_double.open_dispute(charge_id, 5000)
    stripe_double.duplicate(2)
    stripe_double.close_dispute(dispute["id"], won=False)
    assert balance(topup.org) == 0
    assert Wallet.objects.get(org=topup.org).frozen_at is not None
    assert_books_balance(topup.org)


def test_a_dispute_closed_before_its_created_event_arrives_freezes_nothing(api, stripe_double):
    topup = paid_topup(api, stripe_double, 5000)
    [charge_id] = stripe_double.charges
    stripe_double.hold()
    dispute = stripe_double.open_dispute(charge_id)
    stripe_double.close_dispute(dispute["id"], won=True)
    assert stripe_double.release("reversed") == [200, 200]
    assert Wallet.objects.get(org=topup.org).frozen_at is None


def test_a_frozen_wallet_refuses_a_phone_number_with_a_clear_4xx(api, stripe_double, providers):
    topup = paid_topup(api, stripe_double, 5000)
    stripe_double.open_dispute(next(iter(stripe_double.charges)))
    response = api.generic(
        "POST",
        "/api/onboarding/provision-number",
        json.dumps({}),
        content_type="application/json",
        **auth_header(topup.org),
    )
    assert response.status_code == 403
    assert response.json()["error"] == services.WalletOnHold.default_message
    assert response.json()["code"] == "account_on_hold"
    assert balance(topup.org) == 5000 and providers.calls() == 0


def charge_hold(org):
    from django.db import transaction

    with transaction.atomic():
        return services.hold_for_provisioning(
            wallet=services.lock_wallet(org),
            idempotency_key=f"hold-{time.monotonic_ns()}",
            description="Phone number",
        ).entry


def test_a_refund_our_admin_already_debited_is_not_debited_again(api, stripe_double):
    import uuid

    from billing.topups import refund_topup_to_card

    topup = paid_topup(api, stripe_double, 5000)
    stripe_double.hold()  # delivered from this thread, which sees the test's transaction
    result = refund_topup_to_card(topup=topup, amount_pence=1000, reason="x", nonce=uuid.uuid4())
    assert result.refund is not None
    assert stripe_double.release() == [200]
    assert balance(topup.org) == 4000  # the admin's own debit is the only one
    assert LedgerEntry.objects.filter(type=EntryType.CARD_REFUND).count() == 1
    assert TopUp.objects.get(pk=topup.pk).refunded_pence == 1000


# --- A refund that fails afterwards ----------------------------------------------------------


def test_a_dashboard_refund_that_fails_later_gives_its_debit_back_once(api, stripe_double):
    topup = paid_topup(api, stripe_double, 5000)
    [charge_id] = stripe_double.charges
    refund = stripe_double.dashboard_refund(charge_id, 2000)
    assert balance(topup.org) == 3000
    stripe_double.duplicate(2)
    stripe_double.fail_refund(refund["id"])  # charge.refund.updated and refund.failed, twice each
    assert [d.status for d in stripe_double.deliveries[-4:]] == [200] * 4
    assert balance(topup.org) == 5000
    topup.refresh_from_db()
    assert (topup.status, topup.refunded_pence) == ("paid", 0)
    [restored] = LedgerEntry.objects.filter(org=topup.org, type=EntryType.REFUND)
    assert restored.amount_pence == 2000 and "expired_or_canceled_card" in restored.description
    assert_books_balance(topup.org)
    stripe_double.dashboard_refund(charge_id, 1000)  # the failed one is not debited again
    assert balance(topup.org) == 4000
    assert TopUp.objects.get(pk=topup.pk).refunded_pence == 1000


def test_support_refund_to_card_that_fails_later_is_undone_under_the_refused_refunds_key(
    api, stripe_double
):
    import uuid

    from billing.topups import refund_topup_to_card

    topup = paid_topup(api, stripe_double, 5000)
    stripe_double.hold()  # delivered from this thread, which sees the test's transaction
    result = refund_topup_to_card(topup=topup, amount_pence=1000, reason="x", nonce=uuid.uuid4())
    assert stripe_double.release() == [200] and balance(topup.org) == 4000
    stripe_double.fail_refund(result.refund.id)
    assert balance(topup.org) == 5000
    [restored] = LedgerEntry.objects.filter(org=topup.org, type=EntryType.REFUND)
    assert restored.idempotency_key == f"card-refund-reversal:{result.debit.pk}"
    assert restored.reverses_id == result.debit.pk
    assert TopUp.objects.get(pk=topup.pk).status == "paid"
    assert_books_balance(topup.org)


def test_a_refund_update_that_is_not_a_failure_changes_nothing(api, stripe_double):
    topup = paid_topup(api, stripe_double, 5000)
    refund = stripe_double.dashboard_refund(next(iter(stripe_double.charges)), 2000)
    event = stripe_double.emit("refund.updated", refund)  # still succeeded
    assert stripe_double.deliveries[-1].status == 200
    assert WebhookEvent.objects.get(event_id=event["id"]).outcome == "ignored"
    assert balance(topup.org) == 3000
