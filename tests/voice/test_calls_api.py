"""GET /api/calls and /api/calls/<id>: what a clinic sees of its calls, and only its own."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from tests.factories import auth_header
from tests.voice.conftest import finished_call, make_clinic, post_message
from voice.models import Call

pytestmark = pytest.mark.django_db


def test_a_billed_call_shows_its_duration_cost_caller_and_agent(api, vapi_double):
    clinic = make_clinic(vapi_double)
    call_id = finished_call(vapi_double, clinic, seconds=90)
    post_message(api, vapi_double.report(call_id))
    call = Call.objects.get(vapi_call_id=call_id)

    listed = api.get("/api/calls", **auth_header(clinic.org)).json()
    assert [c["id"] for c in listed["calls"]] == [str(call.pk)]
    detail = api.get(f"/api/calls/{call.pk}", **auth_header(clinic.org)).json()
    assert detail["duration_seconds"] == 90 and detail["cost_pence"] == 84
    assert detail["caller_number"] == "+447700900123"
    assert detail["ended_reason"] == "customer-ended-call"
    assert detail["started_at"] and detail["agent"]["id"] == str(clinic.agent.pk)


def test_calls_filter_by_date_range(api, vapi_double):
    clinic = make_clinic(vapi_double)
    now = timezone.now()
    for days_ago in (0, 3, 10):
        Call.objects.create(org=clinic.org, started_at=now - timedelta(days=days_ago))
    after = (now - timedelta(days=5)).isoformat()
    before = (now - timedelta(days=1)).isoformat()
    response = api.get(
        "/api/calls",
        {"started_after": after, "started_before": before},
        **auth_header(clinic.org),
    )
    assert response.status_code == 200
    assert response.json()["pagination"]["total"] == 1
    bad = api.get("/api/calls", {"started_after": "yesterday"}, **auth_header(clinic.org))
    assert bad.status_code == 400 and "error" in bad.json()


def test_another_clinics_call_is_404_and_not_listed(api, vapi_double):
    mine = make_clinic(vapi_double, name="Mine")
    theirs = make_clinic(vapi_double, name="Theirs")
    call_id = finished_call(vapi_double, theirs, seconds=30)
    post_message(api, vapi_double.report(call_id))
    call = Call.objects.get(vapi_call_id=call_id)
    assert api.get(f"/api/calls/{call.pk}", **auth_header(mine.org)).status_code == 404
    assert api.get("/api/calls", **auth_header(mine.org)).json()["calls"] == []
