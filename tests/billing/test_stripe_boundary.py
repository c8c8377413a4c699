"""billing/stripe.py: Stripe's failures arrive as our own exceptions, permanent or not."""

from __future__ import annotations

import socket

import pytest

from billing import stripe as payments


def _dead_url() -> str:
    with socket.socket() as probe:  # a port nothing listens on once the probe closes
        probe.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{probe.getsockname()[1]}"


def test_without_a_secret_key_nothing_is_called(settings):
    settings.STRIPE_SECRET_KEY = ""
    with pytest.raises(payments.NotConfigured) as caught:
        payments.retrieve_checkout_session("cs_test_1")
    assert caught.value.permanent


def test_an_unreachable_stripe_is_transient(settings):
    settings.STRIPE_SECRET_KEY = "sk_test_boundary"
    settings.STRIPE_API_BASE = _dead_url()
    settings.PROVIDER_TIMEOUT_SECONDS = 2
    with pytest.raises(payments.PaymentProviderUnavailable) as caught:
        payments.retrieve_checkout_session("cs_test_1")
    assert not caught.value.permanent


def test_a_webhook_without_a_configured_secret_is_not_accepted(settings):
    settings.STRIPE_WEBHOOK_SECRET = ""
    with pytest.raises(payments.NotConfigured):
        payments.verify_webhook(b"{}", "t=1,v1=00")


def test_a_webhook_secret_list_is_split_on_commas(settings):
    settings.STRIPE_WEBHOOK_SECRET = " whsec_old , whsec_new,"
    assert payments.webhook_secrets() == ["whsec_old", "whsec_new"]
