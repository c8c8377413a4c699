"""Races through real HTTP (live server, one thread per client) and real Postgres connections."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from django.db import connection
from django.db.models import Sum

from billing.models import EntryType, LedgerEntry, Wallet
from billing.services import credit
from onboarding.models import AttemptState, ManagedPhoneNumber, ProvisioningAttempt
from onboarding.reconciler import reconcile_stuck_attempts
from sandbox.server import Reply
from tests.doubles import fixtures
from tests.doubles.fixtures import lapse_leases, run_workers
from tests.factories import access_token, make_org
from voxanne.tenancy import system_context

pytestmark = pytest.mark.django_db(transaction=True)
providers = fixtures.providers


def funded_org(name: str, pence: int = 5000):
    org = make_org(name)
    credit(org=org, amount_pence=pence, type=EntryType.TOPUP, idempotency_key="topup")
    return org


def post_all(live_server, orgs, body=None) -> list[httpx.Response]:
    """One client thread per org in `orgs`, released together."""
    tokens = [access_token(org) for org in orgs]
    start = threading.Barrier(len(orgs))

    def post(token: str) -> httpx.Response:
        with httpx.Client(base_url=live_server.url, timeout=30) as client:
            start.wait()
            return client.post(
                "/api/onboarding/provision-number",
                json=body or {},
                headers={"Authorization": f"Bearer {token}"},
            )

    with ThreadPoolExecutor(len(orgs)) as pool:
        return list(pool.map(post, tokens))


def ledger_sum(org) -> int:
    return LedgerEntry.objects.filter(org=org).aggregate(s=Sum("amount_pence"))["s"]


def test_twelve_concurrent_requests_from_one_org_buy_one_number_and_charge_once(
    live_server, providers
):
    org = funded_org("Busy Clinic")
    providers.twilio.delay("buy", 0.3)  # keep the first attempt in flight while others arrive

    responses = post_all(live_server, [org] * 12)

    statuses = sorted(r.status_code for r in responses)
    assert set(statuses) <= {200, 409}, [r.text for r in responses]
    number = ManagedPhoneNumber.objects.get(org=org).phone_number
    assert all(r.json()["phoneNumber"] == number for r in responses if r.status_code == 200)
    assert all("try again" in r.json()["error"] for r in responses if r.status_code == 409)
    assert statuses.count(200) >= 1
    assert len(providers.twilio.owned_numbers()) == 1 and providers.twilio.calls["buy"] == 1
    assert providers.vapi.imported_numbers() == [number]
    assert LedgerEntry.objects.filter(org=org, type=EntryType.PHONE_PROVISIONING).count() == 1
    assert Wallet.objects.get(org=org).balance_pence == 4000 == ledger_sum(org)


def test_ten_orgs_in_parallel_get_ten_numbers_each_ledger_matching_its_balance(
    live_server, providers
):
    orgs = [funded_org(f"Clinic {i}") for i in range(10)]

    responses = post_all(live_server, orgs)

    assert [r.status_code for r in responses] == [200] * 10, [r.text for r in responses]
    numbers = {r.json()["phoneNumber"] for r in responses}
    assert len(numbers) == 10
    assert {n["phone_number"] for n in providers.twilio.owned_numbers()} == numbers
    assert len(providers.twilio.subaccounts()) == 10
    for org in orgs:
        assert Wallet.objects.get(org=org).balance_pence == 4000 == ledger_sum(org)
        owned = providers.twilio.owned_numbers(org.twilio_subaccount.account_sid)
        assert [n["phone_number"] for n in owned] == [
            ManagedPhoneNumber.objects.get(org=org).phone_number
        ]


def test_a_request_while_one_is_in_flight_is_409_and_retrying_later_gets_the_number(
    live_server, providers
):
    org = funded_org("Patient Clinic")
    providers.vapi.delay("import", 0.5)
    token = access_token(org)
    url = f"{live_server.url}/api/onboarding/provision-number"
    headers = {"Authorization": f"Bearer {token}"}
    with ThreadPoolExecutor(1) as pool:
        first = pool.submit(httpx.post, url, json={}, headers=headers, timeout=30)
        while not ProvisioningAttempt.objects.filter(org=org).exists():
            pass
        second = httpx.post(url, json={}, headers=headers, timeout=30)
        assert second.status_code == 409
        assert first.result().status_code == 200
    retry = httpx.post(url, json={}, headers=headers, timeout=30)
    assert retry.json() == {
        "success": True,
        "phoneNumber": first.result().json()["phoneNumber"],
        "alreadyProvisioned": True,
    }


def test_two_reconcilers_at_once_act_on_each_stuck_attempt_exactly_once(providers):
    orgs = [funded_org(f"Stuck {i}") for i in range(4)]
    # Four worker processes die right after buying: held, bought, not imported.
    assert {w.returncode for w in run_workers(orgs, providers, "after_purchase")} == {137}
    lapse_leases()
    providers.twilio.delay("release", 0.05)
    start = threading.Barrier(2)

    def reconciler():
        try:
            with system_context("test reconciler"):
                start.wait()
                return reconcile_stuck_attempts()
        finally:
            connection.close()

    with ThreadPoolExecutor(2) as pool:
        runs = [pool.submit(reconciler) for _ in range(2)]
        results = [r for run in runs for r in run.result()]

    assert sorted(r.attempt_id for r in results) == sorted(
        ProvisioningAttempt.objects.values_list("id", flat=True)
    )
    assert {r.outcome for r in results} == {"refunded"}
    assert providers.twilio.calls["release"] == 4 and providers.twilio.owned_numbers() == []
    assert LedgerEntry.objects.filter(type=EntryType.REFUND).count() == 4
    assert set(ProvisioningAttempt.objects.values_list("state", flat=True)) == {AttemptState.FAILED}
    for org in orgs:
        assert Wallet.objects.get(org=org).balance_pence == 5000 == ledger_sum(org)


def test_an_undo_that_keeps_failing_refunds_now_and_the_reconciler_releases_later(
    live_server, providers
):
    org = funded_org("Unlucky Clinic")
    providers.vapi.fail("import", Reply(500, {"message": "boom"}))
    providers.twilio.fail(
        "release", Reply(503, {"code": 20503, "message": "down", "status": 503}), times=3
    )
    response = httpx.post(
        f"{live_server.url}/api/onboarding/provision-number",
        json={},
        headers={"Authorization": f"Bearer {access_token(org)}"},
        timeout=30,
    )
    assert response.status_code == 503
    assert Wallet.objects.get(org=org).balance_pence == 5000  # money back before the answer
    attempt = ProvisioningAttempt.objects.get(org=org)
    assert attempt.state == AttemptState.COMPENSATING  # the number is still ours to release
    assert providers.twilio.calls["release"] == 3 and len(providers.twilio.owned_numbers()) == 1

    lapse_leases()
    results = reconcile_stuck_attempts()

    assert [r.outcome for r in results] == ["refunded"]
    assert providers.twilio.owned_numbers() == []
    assert LedgerEntry.objects.filter(org=org, type=EntryType.REFUND).count() == 1
    assert Wallet.objects.get(org=org).balance_pence == 5000 == ledger_sum(org)
