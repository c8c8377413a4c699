"""A gunicorn worker SIGKILLed in the middle of a paid provisioning, at each provider step.

The worker is killed while it waits on Twilio or Vapi (the double holds the call open), so the
provider may still complete the call after our process is gone. The reconciler then ends the
attempt; wallet, ledger and both doubles must agree: no charge without a number, no number
without a charge, nothing orphaned at Twilio or Vapi.
"""

from __future__ import annotations

import os
import signal
import threading
import time

import httpx
import pytest
from django.db.models import Sum

from bench.harness import gunicorn
from billing.models import EntryType, LedgerEntry, Wallet
from billing.services import credit
from onboarding.models import ACTIVE_ATTEMPT_STATES, ManagedPhoneNumber, ProvisioningAttempt
from onboarding.reconciler import reconcile_stuck_attempts
from tests.doubles import fixtures
from tests.doubles.fixtures import (
    assert_twilio_holds_only_recorded_subaccounts,
    lapse_leases,
    test_process_env,
)
from tests.factories import access_token, make_org

pytestmark = pytest.mark.django_db(transaction=True)
providers = fixtures.providers

START = 3000
HOLD_SECONDS = 1.5  # how long the double keeps the step's call open


@pytest.fixture
def gunicorn_one_worker(providers):
    """gunicorn with a single sync worker on the test database and the doubles."""
    env = test_process_env(**providers.env(), PROVIDER_TIMEOUT_SECONDS="10")
    with gunicorn(env, workers=1, timeout=120) as server:
        yield server


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
    server = gunicorn_one_worker
    base = server.url
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
    [victim] = server.worker_pids()
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
    assert_twilio_holds_only_recorded_subaccounts(org, providers)
    # The service answers again (the master replaced the worker), and a retry is served.
    wait_until(lambda: len(server.worker_pids()) == 1)
    retry = httpx.post(
        f"{base}/api/onboarding/provision-number",
        json={},
        headers={"Authorization": f"Bearer {access_token(org)}"},
        timeout=30,
    )
    assert retry.status_code == 200
    assert Wallet.objects.get(org=org).balance_pence == START - 1000
    assert len(providers.twilio.owned_numbers()) == 1
    assert_twilio_holds_only_recorded_subaccounts(org, providers)
    assert len(providers.twilio.subaccounts()) == 1
