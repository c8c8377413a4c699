"""Billing fixtures: the Stripe double, with the settings of the app pointing at it, and its
webhooks delivered to our endpoint through the full Django stack."""

from __future__ import annotations

import json
import threading

import pytest
from django.db import connections
from django.db.models import Sum
from django.test import Client

from billing.models import LedgerEntry, TopUp, Wallet
from sandbox.stripe import StripeDouble
from tests.factories import auth_header

WEBHOOK_URL = "/api/billing/stripe/webhook"


def post_webhook(body: bytes, headers: dict[str, str], client: Client | None = None) -> int:
    """One delivery, as Stripe makes it: the raw body and its Stripe-Signature header."""
    client = client or Client()
    extra = {"HTTP_STRIPE_SIGNATURE": headers["Stripe-Signature"]} if headers else {}
    try:
        response = client.post(
            WEBHOOK_URL, data=body, content_type="application/json; charset=utf-8", **extra
        )
    finally:
        if threading.current_thread() is not threading.main_thread():
            # Sent from one of the double's server threads (an off-session payment's event):
            # its connection would outlive the thread and keep the test database from being
            # dropped at the end of the run.
            connections.close_all()
    return response.status_code


@pytest.fixture
def stripe_double(settings):
    """The Stripe double on 127.0.0.1; each webhook is posted to our endpoint in-process."""
    double = StripeDouble().start()
    for name, value in double.env().items():
        setattr(settings, name, value)
    settings.PROVIDER_TIMEOUT_SECONDS = 5
    double.webhook_sender = post_webhook
    try:
        yield double
    finally:
        double.stop()


def start_topup(api, org, amount: int = 2500, key: str | None = None):
    headers = auth_header(org)
    if key is not None:
        headers["HTTP_IDEMPOTENCY_KEY"] = key
    return api.generic(
        "POST",
        "/api/billing/wallet/topup",
        json.dumps({"amount_pence": amount}),
        content_type="application/json",
        **headers,
    )


def new_topup(api, org, amount: int = 2500) -> TopUp:
    response = start_topup(api, org, amount)
    assert response.status_code == 201, response.content
    return TopUp.objects.get(pk=response.json()["topup_id"])


def balance(org) -> int:
    return Wallet.objects.get(org=org).balance_pence


def topup_credits(org) -> list[int]:
    return list(
        LedgerEntry.objects.filter(org=org, type="topup").values_list("amount_pence", flat=True)
    )


def assert_books_balance(org) -> None:
    total = LedgerEntry.objects.filter(org=org).aggregate(s=Sum("amount_pence"))["s"] or 0
    assert total == balance(org)
