"""POST /api/onboarding/event: strict input, stored per org, and fire-and-forget on failure."""

from __future__ import annotations

import json
import logging
import time

import pytest

from onboarding.models import EventName, OnboardingEvent
from tests.factories import make_org, owner_of
from tests.onboarding.conftest import statements_fail_on, table_locked

URL = "/api/onboarding/event"
EVENTS_TABLE = "onboarding_onboardingevent"

pytestmark = pytest.mark.django_db


def assert_rejected(response) -> dict:
    assert response.status_code == 400, response.content
    body = response.json()
    assert isinstance(body["error"], str) and body["error"]
    assert "onboarding_" not in json.dumps(body) and "column" not in body["error"].lower()
    return body


def test_valid_event_is_stored_with_org_user_step_metadata_and_session(post_json, org):
    body = {
        "event_name": "payment_viewed",
        "step_index": 3,
        "metadata": {"plan": "starter", "nested": {"price_pence": 4900}},
        "session_id": "wizard-session-1",
    }
    response = post_json(URL, body, org)
    assert response.status_code == 200
    assert response.json() == {"success": True}
    event = OnboardingEvent.objects.get()
    assert (event.org_id, event.user_id) == (org.id, owner_of(org).id)
    assert (event.event_name, event.step_index) == ("payment_viewed", 3)
    assert event.metadata == body["metadata"]
    assert event.session_id == "wizard-session-1"
    assert event.created_at is not None


def test_metadata_and_session_id_are_optional(post_json, org):
    assert post_json(URL, {"event_name": "started", "step_index": 0}, org).status_code == 200
    event = OnboardingEvent.objects.get()
    assert (event.metadata, event.session_id) == ({}, "")


@pytest.mark.parametrize("event_name", EventName.values)
def test_every_wizard_event_name_is_accepted(post_json, org, event_name):
    response = post_json(URL, {"event_name": event_name, "step_index": 1}, org)
    assert response.json() == {"success": True}
    assert OnboardingEvent.objects.get().event_name == event_name


@pytest.mark.parametrize(
    "event_name", ["payment_failed", "STARTED", "", " started", 1, True, ["started"], None]
)
def test_unknown_event_name_is_400_and_nothing_is_stored(post_json, org, event_name):
    assert_rejected(post_json(URL, {"event_name": event_name, "step_index": 0}, org))
    assert not OnboardingEvent.objects.exists()


def test_missing_event_name_is_400(post_json, org):
    body = assert_rejected(post_json(URL, {"step_index": 0}, org))
    assert body["error"] == "Please provide the event name."
    assert "event_name" in body["fields"]


@pytest.mark.parametrize("step_index", [0, 4])
def test_step_index_0_to_4_is_accepted(post_json, org, step_index):
    response = post_json(URL, {"event_name": "started", "step_index": step_index}, org)
    assert response.status_code == 200
    assert OnboardingEvent.objects.get().step_index == step_index


@pytest.mark.parametrize("step_index", [5, 99, -1, True, False, 1.5, 2.0, "2", None, [2], {}])
def test_step_index_that_is_not_an_integer_0_to_4_is_400(post_json, org, step_index):
    body = assert_rejected(post_json(URL, {"event_name": "started", "step_index": step_index}, org))
    assert "step index" in body["error"]
    assert "step_index" in body["fields"]
    assert not OnboardingEvent.objects.exists()


def test_missing_step_index_is_400(post_json, org):
    assert_rejected(post_json(URL, {"event_name": "started"}, org))


@pytest.mark.parametrize(
    "metadata", [[], "text", 1, None, {"k": "a\x00b"}, {"a\x00": 1}, {"k": ["\ud800"]}]
)
def test_metadata_must_be_a_storable_json_object(post_json, org, metadata):
    body = {"event_name": "started", "step_index": 0, "metadata": metadata}
    payload = json.dumps(body)  # keeps the lone surrogate as an escape, as a browser would send
    assert_rejected(post_json(URL, payload, org))
    assert not OnboardingEvent.objects.exists()


def nested(depth: int) -> dict:
    """An object holding objects `depth` levels deep in all (the outermost counts as one)."""
    value: dict = {}
    for _ in range(depth - 1):
        value = {"a": value}
    return value


def test_metadata_nested_32_levels_is_accepted_and_deeper_is_400_not_500(post_json, org):
    event = {"event_name": "started", "step_index": 0}
    assert post_json(URL, {**event, "metadata": nested(32)}, org).status_code == 200
    for depth in (33, 900):
        assert_rejected(post_json(URL, {**event, "metadata": nested(depth)}, org))
    assert OnboardingEvent.objects.get().metadata == nested(32)


def test_metadata_number_too_large_for_a_float_is_400_not_silently_dropped(post_json, org):
    payload = '{"event_name": "started", "step_index": 0, "metadata": {"n": 1e400}}'
    assert_rejected(post_json(URL, payload, org))


def metadata_of_size(size: int) -> dict:
    overhead = len(json.dumps({"k": ""}, separators=(",", ":")))
    return {"k": "é" * ((size - overhead) // 2) + "x" * ((size - overhead) % 2)}


def test_metadata_of_8_kib_serialized_is_accepted_and_one_byte_more_is_400(post_json, org):
    fits, too_big = metadata_of_size(8192), metadata_of_size(8193)
    assert len(json.dumps(fits, ensure_ascii=False, separators=(",", ":")).encode()) == 8192
    event = {"event_name": "started", "step_index": 0}
    assert post_json(URL, {**event, "metadata": fits}, org).status_code == 200
    assert_rejected(post_json(URL, {**event, "metadata": too_big}, org))
    assert OnboardingEvent.objects.get().metadata == fits


@pytest.mark.parametrize(
    "session_id", ["s" * 101, 12345, True, None, {"id": "x"}, "\ud800", "a\x00"]
)
def test_session_id_must_be_a_string_of_at_most_100_chars(post_json, org, session_id):
    body = {"event_name": "started", "step_index": 0, "session_id": session_id}
    assert_rejected(post_json(URL, body, org))
    body["session_id"] = "s" * 100
    assert post_json(URL, body, org).status_code == 200


@pytest.mark.parametrize("payload", ["[]", '"started"', "null", "{not json", '{"step_index": NaN}'])
def test_a_body_that_is_not_a_json_object_is_400(post_json, org, payload):
    assert_rejected(post_json(URL, payload, org))


def test_event_without_token_is_401_and_not_stored(post_json):
    response = post_json(URL, {"event_name": "started", "step_index": 0})
    assert response.status_code == 401
    assert response.json()["error"] == "Unauthorized"
    assert not OnboardingEvent.objects.exists()


def test_event_is_stored_for_the_tokens_org_whatever_the_body_says(post_json, org):
    other = make_org("Other Clinic")
    body = {"event_name": "started", "step_index": 0, "org_id": str(other.id)}
    assert post_json(URL, body, org).status_code == 200
    assert OnboardingEvent.objects.get().org_id == org.id


def test_insert_failure_still_answers_success_logs_and_leaves_the_request_usable(
    post_json, org, caplog
):
    """The trigger makes the INSERT fail for real, inside this test's open transaction: only a
    savepoint around the insert lets the rest of the request (and the next one) go on."""
    with statements_fail_on(EVENTS_TABLE, "INSERT"):
        with caplog.at_level(logging.ERROR, logger="onboarding.services"):
            response = post_json(URL, {"event_name": "payment_viewed", "step_index": 3}, org)
        assert response.status_code == 200
        assert response.json() == {"success": True}
        assert not OnboardingEvent.objects.exists()
        [record] = [r for r in caplog.records if r.name == "onboarding.services"]
        assert record.getMessage() == "onboarding event not stored"
        assert record.org_id == str(org.id) and record.event_name == "payment_viewed"
        assert "injected fault" in str(record.exc_info[1])
    assert post_json(URL, {"event_name": "started", "step_index": 0}, org).status_code == 200
    assert OnboardingEvent.objects.get().event_name == "started"


@pytest.mark.django_db(transaction=True)
def test_locked_events_table_still_answers_success_within_the_write_limit(post_json, org, caplog):
    with table_locked(EVENTS_TABLE), caplog.at_level(logging.ERROR, logger="onboarding.services"):
        started = time.monotonic()
        response = post_json(URL, {"event_name": "started", "step_index": 0}, org)
        elapsed = time.monotonic() - started
    assert response.status_code == 200
    assert response.json() == {"success": True}
    assert elapsed < 3, elapsed
    assert any(r.getMessage() == "onboarding event not stored" for r in caplog.records)
    assert not OnboardingEvent.objects.exists()
    # The connection was left clean: the next event is stored.
    assert post_json(URL, {"event_name": "started", "step_index": 0}, org).status_code == 200
    assert OnboardingEvent.objects.count() == 1
