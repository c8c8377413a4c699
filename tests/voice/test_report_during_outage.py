"""A report that arrives while Postgres is down is answered 5xx, and Vapi never sends it again:
the reconciler bills the call once Postgres is back, and only once.

A real Postgres of the test's own behind a real gunicorn; the Vapi double rings the clinic's
number (assistant-request over HTTP), ends the call, and sends its one report into the outage.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pgserver
import psycopg
from django.conf import settings

from bench.harness import gunicorn
from sandbox.vapi import VapiDouble
from tests.faults.test_postgres_restart import own_postgres  # noqa: F401  (a fixture)
from tests.voice.conftest import SECRET

ROOT = Path(settings.BASE_DIR)

SETUP = """
import json
from tests.factories import fund, make_line, make_org
from voice import services, vapi
from voxanne.tenancy import system_context
with system_context("outage test setup"):
    org = make_org("Outage Dental")
    phone_id = vapi.import_twilio_number(
        phone_number="+15550400001", twilio_account_sid="AC1", twilio_auth_token="t",
        name="vx-outage", server=vapi.webhook_server(),
    )
    make_line(org, vapi_phone_id=phone_id, phone_number="+15550400001")
    fund(org, 2000)
    agent = services.create_agent(org=org, fields=services.AgentFields())
print(json.dumps({"org": str(org.pk), "phone_id": phone_id}))
"""


def manage(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        check=True,
        timeout=300,
        capture_output=True,
        text=True,
    )


def pg_ctl(server, *args: str) -> None:
    pgserver.pg_ctl(["-w", *args], pgdata=server.pgdata, user=server.system_user, timeout=60)


def test_a_report_lost_to_an_outage_is_billed_once_by_the_reconciler(own_postgres):  # noqa: F811
    server, url = own_postgres
    double = VapiDouble().start()
    env = {
        **os.environ,
        **double.env(),
        "DATABASE_URL": url,
        "VAPI_WEBHOOK_SECRET": SECRET,
        "PROVIDER_TIMEOUT_SECONDS": "5",
        "LOG_LEVEL": "WARNING",
    }
    env.pop("TEST_DATABASE_NAME", None)
    try:
        manage(env, "migrate", "--no-input", "-v", "0")
        with gunicorn(env, workers=2) as web:
            env["APP_BASE_URL"] = web.url
            made = json.loads(manage(env, "shell", "-c", SETUP).stdout.strip().splitlines()[-1])

            call = double.start_call(made["phone_id"])
            status, answer = call["assistantRequest"]
            assert status == 200 and answer["assistantOverrides"]["maxDurationSeconds"] == 600
            double.end_call(call["id"], duration_seconds=125)  # 125 x 56 / 60 -> 117 pence

            pg_ctl(server, "-m", "fast", "stop")
            [(lost_status, lost_body)] = double.deliver_report(call["id"])
            assert lost_status >= 500 and "error" in lost_body  # Vapi will not send it again

            pg_ctl(server, "restart")  # not running: starts with its last options
            deadline = time.monotonic() + 30
            while httpx.get(f"{web.url}/readyz", timeout=5).status_code != 200:
                assert time.monotonic() < deadline, "the service did not recover"
                time.sleep(0.5)

            first = manage(env, "reconcile_calls")
            assert f"REPAIRED: call {call['id']}" in first.stderr
            second = manage(env, "reconcile_calls")
            assert "0 billed by the reconciler" in second.stdout
            [(late_status, late_body)] = double.deliver_report(call["id"])  # if it ever came
            assert (late_status, late_body) == (200, {"outcome": "duplicate"})
    finally:
        double.stop()

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SELECT set_config('app.system', 'on', false)")
        charges = conn.execute(
            "SELECT idempotency_key, amount_pence FROM billing_ledger_entry"
            " WHERE type = 'call_charge'"
        ).fetchall()
        calls = conn.execute("SELECT vapi_call_id, duration_seconds FROM voxanne_call").fetchall()
        balance = conn.execute(
            "SELECT balance_pence FROM billing_wallet WHERE org_id = %s", [made["org"]]
        ).fetchone()[0]
    assert charges == [(f"call:{call['id']}", -117)]
    assert calls == [(call["id"], 125)]
    assert balance == 2000 - 117
