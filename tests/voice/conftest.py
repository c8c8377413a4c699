"""The voice tests' world: a Vapi double, and clinics whose number and receptionist are in it."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import pytest

from sandbox.vapi import VapiDouble
from tests.factories import fund, make_line, make_org
from voice import services, vapi
from voice.models import Agent
from voxanne.models import Organization

SECRET = "vapi-webhook-secret-for-tests"
WEBHOOK = "/api/voice/vapi/webhook"
_numbers = itertools.count(100)


@pytest.fixture
def vapi_double(settings):
    double = VapiDouble().start()
    for name, value in double.env().items():
        setattr(settings, name, value)
    settings.VAPI_WEBHOOK_SECRET = SECRET
    settings.PROVIDER_TIMEOUT_SECONDS = 5
    settings.CALL_RATE_PENCE_PER_MINUTE = 56
    settings.DEBT_LIMIT_PENCE = 500
    settings.MAX_CALL_SECONDS = 600
    try:
        yield double
    finally:
        double.stop()


@dataclass
class Clinic:
    org: Organization
    phone_id: str
    number: str
    agent: Agent | None


def make_clinic(
    double: VapiDouble, *, balance_pence: int = 2000, agent: bool = True, name: str = "Smile"
) -> Clinic:
    """A clinic with its number imported into the double (routed to our webhook), a ready
    receptionist (created through the API's service, so its assistant is in the double), and
    `balance_pence` in its wallet."""
    org = make_org(f"{name} Dental")
    number = f"+1555030{next(_numbers):04d}"
    phone_id = vapi.import_twilio_number(
        phone_number=number,
        twilio_account_sid="AC1",
        twilio_auth_token="t",
        name="vx-test",
        server=vapi.webhook_server(),
    )
    make_line(org, vapi_phone_id=phone_id, phone_number=number)
    if balance_pence:
        fund(org, balance_pence)
    made = services.create_agent(org=org, fields=services.AgentFields()) if agent else None
    return Clinic(org=org, phone_id=phone_id, number=number, agent=made)


def post_message(api, message: dict, *, secret: str | None = SECRET):
    headers = {"HTTP_X_VAPI_SECRET": secret} if secret is not None else {}
    return api.post(WEBHOOK, {"message": message}, format="json", **headers)


def assistant_request(double: VapiDouble, clinic: Clinic) -> dict:
    """The message Vapi sends when a caller rings the clinic's number."""
    phone = double.number_for(clinic.phone_id)
    return {
        "type": "assistant-request",
        "call": {"id": "c-pending", "phoneNumberId": phone["id"]},
        "phoneNumber": phone,
    }


def finished_call(double: VapiDouble, clinic: Clinic, *, seconds: float) -> str:
    """A call to the clinic that the gate let through and that lasted `seconds`; its id."""
    call = double.start_call(clinic.phone_id, send=False)
    with double.lock:
        double.phone_calls[call["id"]]["assistantId"] = clinic.agent.vapi_assistant_id
    double.end_call(call["id"], duration_seconds=seconds)
    return call["id"]
