"""A gunicorn worker SIGKILLed in the middle of a paid provisioning, at each provider step.

The worker is killed while it waits on Twilio or Vapi (the double holds the call open), so the
provider may still complete the call after our process is gone. The reconciler then ends the
attempt; wallet, ledger and both doubles must agree: no charge without a number, no number
without a charge, nothing orphaned at Twilio or Vapi.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from django.conf import settings
from django.db.models import Sum

from billing.models import EntryType, LedgerEntry, Wallet
from billing.services import credit
from onboarding.models import ACTIVE_ATTEMPT_STATES, ManagedPhoneNumber, ProvisioningAttempt
from onboarding.provisioning import reconcile_stuck_attempts
from tests.doubles import fixtures
from tests.doubles.fixtures import lapse_leases, test_database_url
from tests.factories import access_token, make_org

pytestmark = pytest.mark.django_db(transaction=True)
providers = fixtures.providers

START = 3000
HOLD_SECONDS = 1.5  # how long the double keeps the step's call open


@pytest.fixture
def gunicorn_one_worker(providers):
    """gunicorn with a single sync worker on the test database and the doubles."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {
        **os.environ,
        **providers.env(),
        "DATABASE_URL": test_database_url(),
        "PROVIDER_TIMEOUT_SECONDS": "10",
        "LOG_LEVEL": "WARNING",
    }
    env.pop("TEST_DATABASE_NAME", None)
    master = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "voxanne.wsgi:application",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            "1",
            "--timeout",
            "120",
        ],
        cwd=Path(settings.BASE_DIR),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline and master.poll() is None, "gunicorn did not start"
            time.sleep(0.1)
        yield master, base
    finally:
        master.terminate()
        master.wait(15)


def worker_pids(master: subprocess.Popen) -> list[int]:
    children = Path(f"/proc/{master.pid}/task/{master.pid}/children").read_text().split()
    return [int(pid) for pid in children]


def wait_until(predicate, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


@pytest.mark.parametrize(
    "double,step",
    [
        ("twilio", "create_account"),
        ("twilio", "search"),
        ("twilio", "buy"),
        ("vapi", "import"),
    ],
)
def test_worker_sigkilled_mid_provision_leaves_money_and_providers_in_agreement(
    providers, gunicorn_one_worker, double, step
):
    master, base = gunicorn_one_worker
    org = make_org("Killed Worker Clinic")
    credit(org=org, amount_pence=START, type=EntryType.TOPUP, idempotency_key="topup")
    target = getattr(providers, double)
    target.delay(step, HOLD_SECONDS)
    answers: list[object] = []

    def clinic_clicks() -> None:
        try:
            answers.append(
                httpx.post(
                    f"{base}/api/onboarding/provision-number",
                    json={},
                    headers={"Authorization": f"Bearer {access_token(org)}"},
                    timeout=30,
                )
            )
        except httpx.HTTPError as exc:
            answers.append(exc)

    request = threading.Thread(target=clinic_clicks)
    request.start()
    wait_until(lambda: target.calls[step] >= 1)
    [victim] = worker_pids(master)
    os.kill(victim, signal.SIGKILL)
    request.join(30)
    assert answers and not (
        isinstance(answers[0], httpx.Response) and answers[0].status_code == 200
    )
    time.sleep(HOLD_SECONDS + 0.5)  # the provider finishes the call the dead worker made
    target.heal()

    attempt = ProvisioningAttempt.objects.get(org=org)
    assert attempt.state in ACTIVE_ATTEMPT_STATES  # nobody finished it: the reconciler's job
    lapse_leases()
    assert len(reconcile_stuck_attempts()) == 1

    wallet = Wallet.objects.get(org=org)
    ledger = LedgerEntry.objects.filter(org=org).aggregate(s=Sum("amount_pence"))["s"]
    ours = ManagedPhoneNumber.objects.filter(org=org, status="active")
    assert wallet.balance_pence == ledger == START - 1000 * ours.count()
    assert not ProvisioningAttempt.objects.filter(org=org, state__in=ACTIVE_ATTEMPT_STATES)
    assert {n["sid"] for n in providers.twilio.owned_numbers()} == {
        n.twilio_number_sid for n in ours
    }
    assert set(providers.vapi.imports) == {n.vapi_phone_id for n in ours}
    # The service answers again (the master replaced the worker), and a retry is served.
    wait_until(lambda: len(worker_pids(master)) == 1)
    retry = httpx.post(
        f"{base}/api/onboarding/provision-number",
        json={},
        headers={"Authorization": f"Bearer {access_token(org)}"},
        timeout=30,
    )
    assert retry.status_code == 200
    assert Wallet.objects.get(org=org).balance_pence == START - 1000
    assert len(providers.twilio.owned_numbers()) == 1
