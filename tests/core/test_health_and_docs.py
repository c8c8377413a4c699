import pytest


def test_healthz(client):
    assert client.get("/healthz").json() == {"status": "ok"}


@pytest.mark.django_db
def test_readyz_checks_database_and_broker(client):
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json()["checks"] == {"database": "ok", "broker": "ok"}


@pytest.mark.django_db
def test_schema_describes_the_api_and_its_errors(client):
    response = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    schema = response.json()
    assert "/api/auth/signup" in schema["paths"]
    assert "/api/calls/{call_id}" in schema["paths"]
    responses = schema["paths"]["/api/calls/{call_id}"]["get"]["responses"]
    assert "404" in responses and "401" in responses
    assert client.get("/api/docs/").status_code == 200
