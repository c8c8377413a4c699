"""Pytest fixtures: Twilio and Vapi doubles, with the settings pointing at them."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from tests.doubles.twilio import TwilioDouble
from tests.doubles.vapi import VapiDouble


@dataclass
class Providers:
    twilio: TwilioDouble
    vapi: VapiDouble

    def env(self) -> dict[str, str]:
        return {**self.twilio.env(), **self.vapi.env()}

    def calls(self) -> int:
        return sum(self.twilio.calls.values()) + sum(self.vapi.calls.values())


@pytest.fixture
def providers(settings):
    """Both doubles running on 127.0.0.1, and the settings of the app pointing at them."""
    twilio = TwilioDouble().start()
    vapi = VapiDouble(twilio=twilio).start()
    for name, value in {**twilio.env(), **vapi.env()}.items():
        setattr(settings, name, value)
    settings.PROVISION_COUNTRY = "US"
    settings.PROVIDER_TIMEOUT_SECONDS = 5
    try:
        yield Providers(twilio=twilio, vapi=vapi)
    finally:
        vapi.stop()
        twilio.stop()
