"""Redis (broker and cache) down: the clinic-facing API keeps serving; readiness says why."""

from __future__ import annotations

import pytest

from onboarding.models import OnboardingEvent
from tests.factories import PASSWORD, auth_header, make_org, owner_of, unique_email

pytestmark = pytest.mark.django_db


@pytest.fixture
def redis_down(redis_down, settings):
    """The shared fixture (tests/conftest.py), with the sign-in throttle on: its cache is the
    dead Redis too."""
    settings.AUTH_THROTTLE_RATE = "20/minute"


def test_signup_login_telemetry_status_and_wallet_work_while_redis_is_down(api, redis_down):
    signup = api.post(
        "/api/auth/signup",
        {"email": unique_email(), "password": PASSWORD, "clinic_name": "No Redis"},
        format="json",
    )
    assert signup.status_code == 201
    org = make_org("Also No Redis")
    login = api.post(
        "/api/auth/token", {"email": owner_of(org).email, "password": PASSWORD}, format="json"
    )
    assert login.status_code == 200
    headers = auth_header(org)
    event = api.post(
        "/api/onboarding/event",
        {"event_name": "payment_viewed", "step_index": 3},
        format="json",
        **headers,
    )
    assert event.json() == {"success": True}
    status = api.get("/api/onboarding/status", **headers)
    assert status.status_code == 200 and status.json()["needs_onboarding"] is True
    assert api.get("/api/billing/wallet", **headers).json()["balance_pence"] == 0
    assert OnboardingEvent.objects.for_org(org).filter(event_name="payment_viewed").count() == 1


def test_readyz_reports_the_broker_unavailable(client, redis_down):
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"] == {"database": "ok", "broker": "unavailable"}
