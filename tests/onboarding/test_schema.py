"""The OpenAPI schema describes the onboarding endpoints as they behave."""

from __future__ import annotations

import pytest

from onboarding.models import EventName

pytestmark = pytest.mark.django_db


@pytest.fixture
def schema(client):
    response = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    return response.json()


def resolve(schema: dict, ref_holder: dict) -> dict:
    name = ref_holder["$ref"].rsplit("/", 1)[-1]
    return schema["components"]["schemas"][name]


def body_schema(schema: dict, operation: dict, status: str) -> dict:
    return resolve(schema, operation["responses"][status]["content"]["application/json"]["schema"])


def test_event_endpoint_documents_its_strict_input_and_errors(schema):
    operation = schema["paths"]["/api/onboarding/event"]["post"]
    request = resolve(schema, operation["requestBody"]["content"]["application/json"]["schema"])
    assert set(request["required"]) == {"event_name", "step_index"}
    assert request["properties"]["step_index"] == {"type": "integer", "maximum": 4, "minimum": 0}
    assert set(resolve(schema, request["properties"]["event_name"])["enum"]) == set(
        EventName.values
    )
    assert request["properties"]["metadata"]["type"] == "object"
    assert request["properties"]["session_id"]["maxLength"] == 100
    assert body_schema(schema, operation, "200")["properties"] == {"success": {"type": "boolean"}}
    assert {"400", "401"} <= set(operation["responses"])
    assert "error" in body_schema(schema, operation, "400")["properties"]


def test_status_endpoint_documents_the_four_keys(schema):
    operation = schema["paths"]["/api/onboarding/status"]["get"]
    body = body_schema(schema, operation, "200")
    assert set(body["required"]) == {"needs_onboarding", "completed_at", "clinic_name", "specialty"}
    assert body["properties"]["completed_at"]["nullable"] is True
    assert "401" in operation["responses"]


def test_complete_endpoint_documents_its_500(schema):
    operation = schema["paths"]["/api/onboarding/complete"]["post"]
    request = resolve(schema, operation["requestBody"]["content"]["application/json"]["schema"])
    assert set(request["properties"]) == {"clinic_name", "specialty"}
    assert not request.get("required")
    assert {"400", "401", "500"} <= set(operation["responses"])
