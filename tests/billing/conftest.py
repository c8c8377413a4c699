"""Billing fixtures: the Stripe double, with the settings of the app pointing at it."""

from __future__ import annotations

import pytest

from sandbox.stripe import StripeDouble


@pytest.fixture
def stripe_double(settings):
    """The Stripe double on 127.0.0.1; its webhooks go nowhere until a test says where."""
    double = StripeDouble().start()
    for name, value in double.env().items():
        setattr(settings, name, value)
    settings.PROVIDER_TIMEOUT_SECONDS = 5
    try:
        yield double
    finally:
        double.stop()
