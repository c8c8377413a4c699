"""Every /api/ error is {"error": "<plain sentence>"} and leaks nothing."""

from __future__ import annotations

import json
import logging
import re

import pytest

from tests.factories import auth_header, make_org

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.core.urls")]

LEAKS = re.compile(
    r"(select |insert |update |relation|column|voxanne_|org_id|traceback|exception|error:|"
    r"\.py|/work|/srv|psycopg|postgres|sql|django|rest_framework|simplejwt|[0-9a-f]{8}-[0-9a-f]{4}-)",
    re.IGNORECASE,
)


def assert_error_body(response, status: int) -> dict:
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert isinstance(body.get("error"), str) and body["error"]
    assert not LEAKS.search(body["error"]), body
    assert response["X-Request-ID"]
    return body


def test_unknown_api_path_is_json_404(api):
    assert_error_body(api.get("/api/no-such-thing"), 404)


def test_wrong_method_is_json_405(api):
    org = make_org()
    body = assert_error_body(api.delete("/api/calls", **auth_header(org)), 405)
    assert body["error"] == "Method not allowed"


def test_malformed_json_is_400(api):
    response = api.generic("POST", "/api/auth/signup", "{not json", content_type="application/json")
    assert_error_body(response, 400)


def test_absurdly_nested_json_is_400_not_a_crash(api):
    body = "[" * 20_000 + "]" * 20_000
    response = api.generic("POST", "/api/auth/signup", body, content_type="application/json")
    assert_error_body(response, 400)


def test_wrong_content_type_is_415(api):
    response = api.generic(
        "POST", "/api/auth/signup", "email=a", content_type="application/x-www-form-urlencoded"
    )
    assert_error_body(response, 415)


def test_oversized_body_is_413(api, settings):
    payload = json.dumps(
        {"email": "a@b.test", "password": "x" * (settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 10)}
    )
    response = api.generic("POST", "/api/auth/signup", payload, content_type="application/json")
    assert_error_body(response, 413)


def test_missing_and_bad_tokens(api):
    assert assert_error_body(api.get("/api/agents"), 401) == {"error": "Unauthorized"}
    bad = api.get("/api/agents", HTTP_AUTHORIZATION="Bearer eyJhbGciOi.bad.token")
    assert assert_error_body(bad, 401) == {"error": "Invalid token"}
    assert "eyJhbGciOi" not in bad.content.decode()


def test_forbidden_is_json_403(api):
    org = make_org()
    assert_error_body(api.get("/api/test-probes/forbidden", **auth_header(org)), 403)


def test_conflict_payment_and_unprocessable_keep_their_safe_message(api):
    org = make_org()
    body = assert_error_body(api.get("/api/test-probes/raises/payment", **auth_header(org)), 402)
    assert body["error"] == "Insufficient balance. Please top up your wallet."
    body = assert_error_body(api.get("/api/test-probes/raises/conflict", **auth_header(org)), 409)
    assert body["error"] == "Another provisioning is in progress. Please retry shortly."
    assert_error_body(api.get("/api/test-probes/raises/unprocessable", **auth_header(org)), 422)


def test_forced_500_is_sanitized_and_logged_with_request_id(api, caplog):
    org = make_org()
    with caplog.at_level(logging.ERROR):
        response = api.get("/api/test-probes/explode", **auth_header(org))
    body = assert_error_body(response, 500)
    assert body == {"error": "Internal server error"}
    logged = [r for r in caplog.records if r.name == "voxanne.errors"]
    assert logged and logged[0].request_id == response["X-Request-ID"]
    assert "secret-token" in logged[0].exc_text or logged[0].exc_info


def test_database_error_500_names_no_table_or_column(api):
    org = make_org()
    assert_error_body(api.get("/api/test-probes/bad-sql", **auth_header(org)), 500)


def test_plain_django_view_crash_under_api_is_json_500(api):
    assert_error_body(api.get("/api/test-probes/plain-crash"), 500)


def test_validation_errors_name_api_fields_not_columns(api):
    body = assert_error_body(api.post("/api/auth/signup", {"email": "nope"}, format="json"), 400)
    assert body["error"] == "Please enter a valid email."
    assert set(body["fields"]) == {"email", "password"}


BAD_REQUESTS = [
    ("post", "/api/auth/signup", {"password": "long-enough-password-1"}),
    ("post", "/api/auth/signup", {"email": "a@b.test", "password": ["x"]}),
    ("post", "/api/auth/signup", {"email": "a" * 300 + "@b.test", "password": "x"}),
    ("post", "/api/onboarding/event", {"event_name": None, "step_index": 0}),
    ("post", "/api/onboarding/event", {"event_name": "nope", "step_index": 0}),
    ("post", "/api/onboarding/event", {"event_name": "started", "step_index": 99}),
    ("post", "/api/onboarding/event", {"event_name": "started", "step_index": "2"}),
    ("post", "/api/onboarding/event", {"event_name": "started", "step_index": 0, "metadata": 1}),
    ("post", "/api/onboarding/event", {"event_name": "started", "step_index": 0, "session_id": 1}),
    ("post", "/api/onboarding/complete", {"clinic_name": 12}),
    ("post", "/api/onboarding/complete", {"specialty": ["dental"]}),
    ("get", "/api/calls?page=0", None),
    ("get", "/api/agents?limit=x", None),
    ("get", "/api/billing/wallet/transactions?type=nope", None),
]


@pytest.mark.parametrize("method,path,payload", BAD_REQUESTS)
def test_a_validation_error_is_a_sentence_that_names_no_field_and_no_rule(
    api, method, path, payload
):
    org = make_org()
    call = getattr(api, method)
    response = (
        call(path, payload, format="json", **auth_header(org))
        if payload
        else call(path, **auth_header(org))
    )
    body = assert_error_body(response, 400)
    sentence = body["error"]
    assert sentence[0].isupper() and sentence.endswith("."), sentence
    assert "fields" in body and body["fields"], body
    for field in body["fields"]:
        assert field not in sentence or "_" not in field, sentence  # a key such as event_name
    assert not re.search(r"\w+_\w+|:|\bfield\b|[0-9]|ensure|characters", sentence, re.I), sentence


def test_success_bodies_carry_no_error_key(api):
    org = make_org()
    for path in ("/api/calls", "/api/agents"):
        response = api.get(path, **auth_header(org))
        assert response.status_code == 200
        assert "error" not in response.json()
