"""Schemathesis fuzzes every endpoint of our OpenAPI schema against a live gunicorn.

Three identities: a clinic's valid token, no token, and another clinic's token (whose data
must never show up). Zero 5xx, every error {"error": str}, responses match the schema.
`make fuzz` runs the same with a larger budget.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings

from bench.harness import gunicorn
from billing.models import EntryType
from billing.services import credit
from tests.doubles import fixtures
from tests.doubles.fixtures import test_process_env
from tests.factories import access_token, make_agent, make_call, make_org

pytestmark = pytest.mark.django_db(transaction=True)
providers = fixtures.providers

CHECKS = ",".join(
    [
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_schema_conformance",
        "error_body_is_one_plain_sentence",
    ]
)
MAX_EXAMPLES = os.environ.get("FUZZ_MAX_EXAMPLES", "8")


def run_schemathesis(base_url: str, *headers: str) -> subprocess.CompletedProcess:
    command = [
        sys.executable,
        "-m",
        "schemathesis.cli",
        "run",
        f"{base_url}/api/schema/",
        "--url",
        base_url,
        "--checks",
        CHECKS,
        "--max-examples",
        MAX_EXAMPLES,
        "--phases",
        "examples,coverage,fuzzing",
        "--workers",
        "2",
        "--request-timeout",
        "20",
        "--no-color",
        "--seed",
        "1",
        # The unsubscribe link's token is a signed value no generator can forge.
        "--exclude-path-regex",
        "^/api/schema/$",
    ]
    for header in headers:
        command += ["-H", header]
    env = {**os.environ, "SCHEMATHESIS_HOOKS": "tests.fuzz.hooks"}
    return subprocess.run(
        command,
        cwd=Path(settings.BASE_DIR),
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.fixture
def server(providers):
    """gunicorn (2 workers) on the test database, Twilio and Vapi served by the doubles."""
    # A webhook secret, so the Stripe webhook answers bad signatures (400), not "not configured".
    env = test_process_env(**providers.env(), STRIPE_WEBHOOK_SECRET="whsec_fuzz")
    with gunicorn(env, workers=2) as running:
        yield running


@pytest.fixture
def clinics():
    mine, theirs = make_org("Fuzzed Clinic"), make_org("Other Clinic")
    for org in (mine, theirs):
        make_call(org, make_agent(org))
        credit(org=org, amount_pence=500, type=EntryType.TOPUP, idempotency_key="fuzz-topup")
    return mine, theirs


@pytest.mark.parametrize("identity", ["valid-token", "no-token", "other-orgs-token"])
def test_fuzzing_every_endpoint_finds_no_5xx_and_only_plain_errors(server, clinics, identity):
    mine, theirs = clinics
    headers = {
        "valid-token": [f"Authorization: Bearer {access_token(mine)}"],
        "no-token": [],
        "other-orgs-token": [
            f"Authorization: Bearer {access_token(theirs)}",
            f"X-Org-Id: {mine.id}",
        ],
    }[identity]
    result = run_schemathesis(server.url, *headers)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
