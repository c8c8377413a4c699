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


@pytest.mark.django_db
def test_docs_page_serves_swagger_ui_from_our_own_static_files(client):
    import re

    html = client.get("/api/docs/").content.decode()
    assets = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert assets, html
    assert not [a for a in assets if a.startswith(("http:", "https:", "//"))], assets
    bundle = next(a for a in assets if a.endswith("swagger-ui-bundle.js"))
    response = client.get(bundle)
    assert response.status_code == 200
    assert b"SwaggerUI" in b"".join(response.streaming_content)


def _setting_in_a_fresh_process(name: str, **env: str) -> str:
    import os
    import subprocess
    import sys

    from django.conf import settings

    code = f"from django.conf import settings; print(repr(settings.{name}))"
    result = subprocess.run(
        [sys.executable, "-c", f"import django; django.setup(); {code}"],
        cwd=settings.BASE_DIR,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "voxanne.settings", **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1]


def test_x_forwarded_proto_is_believed_only_behind_a_trusted_proxy():
    assert _setting_in_a_fresh_process("SECURE_PROXY_SSL_HEADER") == "None"
    assert _setting_in_a_fresh_process("SECURE_PROXY_SSL_HEADER", TRUSTED_PROXY_COUNT="1") == (
        "('HTTP_X_FORWARDED_PROTO', 'https')"
    )
