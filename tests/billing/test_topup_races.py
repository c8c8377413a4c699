"""Real concurrency and a real outage: one credit however many deliveries and checks race,
and webhooks still credit while Redis (the broker) is down."""

from __future__ import annotations

import time

import pytest
from django.test import Client

from billing import topups
from billing.models import TopUp, WebhookEvent
from onboarding.models import OnboardingEvent
from tests.billing.concurrently import run_at_once
from tests.billing.conftest import (
    assert_books_balance,
    balance,
    new_topup,
    post_webhook,
    topup_credits,
)
from tests.factories import make_org

pytestmark = pytest.mark.django_db(transaction=True)


def test_twenty_deliveries_racing_return_page_checks_credit_once(api, stripe_double):
    org = make_org()
    topup = new_topup(api, org, 2500)
    stripe_double.hold()
    stripe_double.pay(topup.stripe_session_id)
    [event] = stripe_double.take_held()
    body, headers = stripe_double.signed(event)

    def work(index: int):
        if index < 20:
            return post_webhook(body, headers, Client())
        return topups.check_topup(TopUp.objects.get(pk=topup.pk)).status

    results = run_at_once(work, 25)
    assert results[:20] == [200] * 20, results
    assert results[20:] == ["paid"] * 5, results
    assert topup_credits(org) == [2500] and balance(org) == 2500
    assert WebhookEvent.objects.filter(event_id=event["id"]).count() == 1
    assert OnboardingEvent.objects.filter(org=org, event_name="payment_success").count() == 1
    assert_books_balance(org)


def test_webhooks_still_credit_while_redis_is_down(api, stripe_double, redis_down):
    org = make_org()
    topup = new_topup(api, org, 2500)
    started = time.monotonic()
    stripe_double.pay(topup.stripe_session_id)
    assert stripe_double.deliveries[-1].status == 200
    assert time.monotonic() - started < 10
    assert topup_credits(org) == [2500]
    assert TopUp.objects.get(pk=topup.pk).receipt_sent_at is None  # send_receipts' to send
