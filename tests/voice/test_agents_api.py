"""POST/PATCH /api/agents: the clinic's receptionist in Vapi, one per clinic, never two
assistants for one agent, nothing half made when Vapi is down."""

from __future__ import annotations

import pytest
from django.db import IntegrityError, transaction

from sandbox.server import Reply
from tests.factories import auth_header, make_org
from voice.models import Agent

pytestmark = pytest.mark.django_db


def create(api, org, body=None):
    return api.post("/api/agents", body or {}, format="json", **auth_header(org))


def test_one_click_creates_a_ready_agent_from_the_clinics_name_and_specialty(api, vapi_double):
    org = make_org("Smile Dental")
    org.specialty = "dental"
    org.save()
    response = create(api, org)
    assert response.status_code == 201, response.content
    body = response.json()
    assert {"id", "name", "vapi_assistant_id", "status"} <= set(body)
    assert body["status"] == "ready" and body["name"] == "Smile Dental receptionist"
    assistant = vapi_double.assistants[body["vapi_assistant_id"]]
    assert assistant["name"] == f"vx-{body['id'].replace('-', '')}" and len(assistant["name"]) <= 40
    assert "Smile Dental" in assistant["firstMessage"]
    assert "dental clinic" in assistant["model"]["messages"][0]["content"]
    assert "end-of-call-report" in assistant["serverMessages"]
    assert assistant["server"]["url"].endswith("/api/voice/vapi/webhook")
    assert assistant["maxDurationSeconds"] == 600


def test_the_clinics_own_words_are_used(api, vapi_double):
    org = make_org()
    body = create(
        api,
        org,
        {
            "name": "Ava",
            "first_message": "Hi, Ava here.",
            "instructions": "Be kind.",
            "voice": "nova",
        },
    ).json()
    assistant = vapi_double.assistants[body["vapi_assistant_id"]]
    assert (body["name"], body["first_message"], body["voice"]) == ("Ava", "Hi, Ava here.", "nova")
    assert assistant["firstMessage"] == "Hi, Ava here."
    assert assistant["voice"]["voiceId"] == "nova"


def test_a_second_agent_is_409_and_the_database_holds_one_active_agent_per_clinic(api, vapi_double):
    org = make_org()
    assert create(api, org).status_code == 201
    second = create(api, org)
    assert second.status_code == 409 and "error" in second.json()
    assert len(vapi_double.assistants) == 1
    with pytest.raises(IntegrityError), transaction.atomic():
        Agent.objects.create(org=org, name="Another")


@pytest.mark.parametrize("status", [500, 503, 429])
def test_vapi_down_is_503_and_nothing_half_made(api, vapi_double, status):
    org = make_org()
    vapi_double.fail("create_assistant", Reply(status, {"message": "down"}), times=-1)
    response = create(api, org)
    assert response.status_code == 503 and set(response.json()) <= {"error", "code"}
    assert vapi_double.assistants == {}
    agent = Agent.objects.get(org=org)
    assert agent.status == "creating" and agent.vapi_assistant_id == ""

    vapi_double.heal()
    retried = create(api, org)
    assert retried.status_code == 201 and retried.json()["id"] == str(agent.pk)
    assert len(vapi_double.assistants) == 1


def test_vapi_creating_then_timing_out_leaves_one_assistant_after_the_retry(
    api, vapi_double, settings
):
    settings.PROVIDER_TIMEOUT_SECONDS = 0.3
    org = make_org()
    vapi_double.time_out_after("create_assistant", 1.0)
    assert create(api, org).status_code == 503
    assert len(vapi_double.assistants) == 1  # Vapi made it; we never heard

    vapi_double.heal()
    response = create(api, org, {"name": "Ava"})
    assert response.status_code == 201
    [assistant] = vapi_double.assistants.values()
    assert response.json()["vapi_assistant_id"] == assistant["id"]
    assert vapi_double.calls["create_assistant"] == 1  # found by name, not created again


def test_patch_changes_the_agent_and_its_assistant(api, vapi_double):
    org = make_org()
    agent = create(api, org).json()
    response = api.patch(
        f"/api/agents/{agent['id']}",
        {"first_message": "Good morning!"},
        format="json",
        **auth_header(org),
    )
    assert response.status_code == 200 and response.json()["first_message"] == "Good morning!"
    assert vapi_double.assistants[agent["vapi_assistant_id"]]["firstMessage"] == "Good morning!"


def test_patch_with_vapi_down_is_503_and_changes_nothing(api, vapi_double):
    org = make_org()
    agent = create(api, org).json()
    vapi_double.fail("update_assistant", Reply(502, {"message": "down"}))
    response = api.patch(
        f"/api/agents/{agent['id']}", {"name": "Zed"}, format="json", **auth_header(org)
    )
    assert response.status_code == 503
    assert Agent.objects.get(pk=agent["id"]).name == agent["name"]


def test_another_clinics_agent_is_404(api, vapi_double):
    mine, theirs = make_org(), make_org()
    agent = create(api, theirs).json()
    for method in (api.get, api.patch):
        response = method(f"/api/agents/{agent['id']}", {}, format="json", **auth_header(mine))
        assert response.status_code == 404


def test_bad_input_is_400(api, vapi_double):
    org = make_org()
    response = create(api, org, {"name": "x" * 201})
    assert response.status_code == 400 and "error" in response.json()
    assert not Agent.objects.filter(org=org).exists()
