"""Crash safety: a real worker process dies at each step boundary; the reconciler then drives
the attempt to an end. Every case ends with no money lost, no number orphaned, the wallet
equal to its ledger, and the doubles agreeing with our rows."""

from __future__ import annotations

import pytest
from django.db.models import Sum

from billing.models import EntryType, LedgerEntry, Wallet
from billing.services import credit
from onboarding.models import (
    ACTIVE_ATTEMPT_STATES,
    AttemptState,
    ManagedPhoneNumber,
    ProvisioningAttempt,
)
from onboarding.reconciler import reconcile_stuck_attempts
from sandbox.server import Reply
from tests.doubles import fixtures
from tests.doubles.fixtures import (
    assert_twilio_holds_only_recorded_subaccounts,
    lapse_leases,
    run_workers,
)
from tests.factories import make_org

pytestmark = pytest.mark.django_db(transaction=True)
providers = fixtures.providers

START = 5000


def assert_consistent(org, providers) -> None:
    """No money lost, nothing orphaned, and the providers agree with our rows."""
    wallet = Wallet.objects.get(org=org)
    ledger = LedgerEntry.objects.filter(org=org).aggregate(s=Sum("amount_pence"))["s"]
    assert wallet.balance_pence == ledger
    assert not ProvisioningAttempt.objects.filter(org=org, state__in=ACTIVE_ATTEMPT_STATES)
    ours = ManagedPhoneNumber.objects.filter(org=org, status="active")
    assert {n["sid"] for n in providers.twilio.owned_numbers()} == {
        n.twilio_number_sid for n in ours
    }
    assert set(providers.vapi.imports) == {n.vapi_phone_id for n in ours}
    assert wallet.balance_pence == START - 1000 * ours.count()
    assert_twilio_holds_only_recorded_subaccounts(org, providers)


FINISHED, REFUNDED = "finished", "refunded"


@pytest.mark.parametrize(
    "fault_at,expected",
    [
        ("after_hold", REFUNDED),
        ("subaccount_unrecorded", REFUNDED),  # created, SID never written: found by name
        ("after_subaccount", REFUNDED),
        ("purchase_unrecorded", REFUNDED),  # bought, SID never written: found by FriendlyName
        ("after_purchase", REFUNDED),
        ("import_unrecorded", FINISHED),  # imported, id never written: found by number
        ("after_import", FINISHED),
        ("before_settle", FINISHED),  # dies inside the settle transaction
    ],
)
def test_a_worker_killed_at_each_step_is_finished_or_refunded_by_the_reconciler(
    providers, fault_at, expected
):
    org = make_org("Crash Clinic")
    credit(org=org, amount_pence=START, type=EntryType.TOPUP, idempotency_key="topup")

    [worker] = run_workers([org], providers, fault_at)

    assert worker.returncode == 137, worker.stdout + worker.stderr
    attempt = ProvisioningAttempt.objects.get(org=org)
    assert attempt.state == AttemptState.IN_PROGRESS
    assert Wallet.objects.get(org=org).balance_pence == START - 1000  # held, not yet decided
    assert reconcile_stuck_attempts() == []  # its lease has not lapsed: not the reconciler's yet

    lapse_leases()
    results = reconcile_stuck_attempts()

    assert [r.outcome for r in results] == [expected]
    attempt.refresh_from_db()
    expected_state = AttemptState.SUCCEEDED if expected == FINISHED else AttemptState.FAILED
    assert attempt.state == expected_state
    assert attempt.reconciled_at is not None
    assert_consistent(org, providers)
    if fault_at in ("purchase_unrecorded", "after_purchase"):
        assert [n["friendly_name"] for n in providers.twilio.released] == [
            attempt.number_friendly_name
        ]
    assert providers.twilio.calls["buy"] == (
        0 if fault_at in ("after_hold", "subaccount_unrecorded", "after_subaccount") else 1
    )
    lapse_leases()
    assert reconcile_stuck_attempts() == []  # nothing left to do


def test_a_worker_killed_between_undo_and_refund_is_refunded_by_the_reconciler(providers):
    org = make_org("Crash Clinic")
    credit(org=org, amount_pence=START, type=EntryType.TOPUP, idempotency_key="topup")
    providers.vapi.fail("import", Reply(500, {"message": "boom"}))

    [worker] = run_workers([org], providers, "before_refund")

    assert worker.returncode == 137, worker.stdout + worker.stderr
    assert ProvisioningAttempt.objects.get(org=org).state == AttemptState.COMPENSATING
    assert providers.twilio.owned_numbers() == []  # the undo ran; the refund did not
    lapse_leases()
    results = reconcile_stuck_attempts()
    assert [r.outcome for r in results] == [REFUNDED]
    assert_consistent(org, providers)
    assert LedgerEntry.objects.filter(org=org, type=EntryType.REFUND).count() == 1
