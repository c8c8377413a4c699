"""One clinic's wizard firing events, completions and status reads at once, over real HTTP."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from onboarding.models import EventName, OnboardingEvent
from tests.factories import access_token, make_org, owner_of
from voxanne.models import Organization

EVENTS = 30
COMPLETIONS = 30
STATUS_READS = 10


@pytest.mark.django_db(transaction=True)
def test_interleaved_events_and_completions_all_succeed_and_leave_one_consistent_state(
    live_server,
):
    org = make_org("Smile Dental")
    headers = {"Authorization": f"Bearer {access_token(org)}"}
    names = EventName.values
    events = [
        {
            "event_name": names[i % len(names)],
            "step_index": i % 5,
            "metadata": {"seq": i},
            "session_id": f"session-{i}",
        }
        for i in range(EVENTS)
    ]
    completions = [
        {"clinic_name": f"Clinic {i}", "specialty": f"Specialty {i}"} for i in range(COMPLETIONS)
    ]
    requests = []
    for i in range(max(EVENTS, COMPLETIONS)):
        if i < EVENTS:
            requests.append(("POST", "/api/onboarding/event", events[i]))
        if i < COMPLETIONS:
            requests.append(("POST", "/api/onboarding/complete", completions[i]))
        if i % 3 == 0 and len([r for r in requests if r[0] == "GET"]) < STATUS_READS:
            requests.append(("GET", "/api/onboarding/status", None))

    answered_at = {}

    def send(request):
        method, path, body = request
        # One client per request: its own TCP connection, so its own server thread and
        # database connection.
        with httpx.Client(base_url=live_server.url, headers=headers, timeout=30) as client:
            response = client.request(method, path, json=body)
        answered_at[id(request)] = timezone.now()
        return path, response

    started = timezone.now()
    with ThreadPoolExecutor(max_workers=16) as pool:
        answers = list(pool.map(send, requests))
    finished = timezone.now()

    assert [r.status_code for _, r in answers] == [200] * len(requests)
    assert all(r.json() == {"success": True} for path, r in answers if "status" not in path)

    stored = OnboardingEvent.objects.for_org(org)
    owner_id = owner_of(org).id
    assert sorted(
        (e.metadata["seq"], e.event_name, e.step_index, e.session_id, e.user_id) for e in stored
    ) == [
        (i, e["event_name"], e["step_index"], e["session_id"], owner_id)
        for i, e in enumerate(events)
    ]

    org = Organization.objects.get(pk=org.pk)
    first_completion_answered = min(
        answered_at[id(r)] for r in requests if r[1] == "/api/onboarding/complete"
    )
    assert started <= org.onboarding_completed_at <= first_completion_answered <= finished
    # Each call writes its name and specialty in one statement: the pair comes from one call.
    assert org.clinic_name.removeprefix("Clinic ") == org.specialty.removeprefix("Specialty ")
    assert org.clinic_name in {c["clinic_name"] for c in completions}
    # Whoever read a completion time read the one that stayed: it was never overwritten.
    seen = {r.json()["completed_at"] for path, r in answers if "status" in path} - {None}
    assert {parse_datetime(t) for t in seen} <= {org.onboarding_completed_at}
