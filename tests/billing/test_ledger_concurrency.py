"""Real threads, separate connections: the wallet lock and the database keep money exact."""

from __future__ import annotations

import pytest

from billing import services
from billing.models import EntryType, LedgerEntry, Wallet
from billing.reconciliation import reconcile_wallets
from tests.billing.concurrently import run_at_once
from tests.factories import charge, fund, make_org

pytestmark = pytest.mark.django_db(transaction=True)


def test_fifty_concurrent_debits_on_a_wallet_funded_for_twenty_let_exactly_twenty_through():
    org = make_org()
    fund(org, 20 * 1000)

    def debit(i: int):
        return services.debit(
            org=org.pk,
            amount_pence=1000,
            type=EntryType.PHONE_PROVISIONING,
            idempotency_key=f"number-{i}",
        ).entry

    results = run_at_once(debit, 50)
    succeeded = [r for r in results if isinstance(r, LedgerEntry)]
    refused = [r for r in results if isinstance(r, services.InsufficientFunds)]
    assert (len(succeeded), len(refused)) == (20, 30), results
    assert Wallet.objects.get(org=org).balance_pence == 0
    entries = LedgerEntry.objects.for_org(org)
    assert entries.count() == 21
    assert min(e.balance_after_pence for e in entries) == 0
    assert reconcile_wallets().ok


def test_concurrent_retries_of_one_refund_refund_it_once():
    org = make_org()
    fund(org, 1000)
    debit = charge(org, 1000)

    def retry(i: int):
        return services.refund(
            entry=debit, reason="number failed", idempotency_key="refund-1"
        ).entry

    results = run_at_once(retry, 10)
    assert {r.pk for r in results if isinstance(r, LedgerEntry)} == {
        LedgerEntry.objects.get(reverses=debit).pk
    }, results
    assert Wallet.objects.get(org=org).balance_pence == 1000


def test_concurrent_full_refunds_with_different_keys_refund_the_debit_once():
    org = make_org()
    fund(org, 1000)
    debit = charge(org, 1000)

    def agent(i: int):
        return services.refund(entry=debit, reason="agent", idempotency_key=f"agent-{i}").entry

    results = run_at_once(agent, 10)
    assert sum(isinstance(r, LedgerEntry) for r in results) == 1, results
    assert sum(isinstance(r, services.RefundRefused) for r in results) == 9
    assert services.refundable_remainder(debit) == 0
    assert Wallet.objects.get(org=org).balance_pence == 1000


def test_concurrent_partial_refunds_never_add_up_beyond_the_debit():
    org = make_org()
    fund(org, 1000)
    debit = charge(org, 1000)

    def agent(i: int):
        return services.refund(
            entry=debit, amount_pence=400, reason="partial", idempotency_key=f"part-{i}"
        ).entry

    results = run_at_once(agent, 10)
    assert sum(isinstance(r, LedgerEntry) for r in results) == 2, results
    assert services.refundable_remainder(debit) == 200
    assert Wallet.objects.get(org=org).balance_pence == 800
    assert reconcile_wallets().ok


def test_a_hold_released_by_two_workers_at_once_is_returned_once():
    org = make_org()
    fund(org, 1000)
    hold = charge(org, services.PHONE_NUMBER_PRICE_PENCE, key="attempt-1")

    def release(i: int):
        return services.release_hold(hold=hold, reason="provider failed").entry

    results = run_at_once(release, 8)
    assert len({r.pk for r in results if isinstance(r, LedgerEntry)}) == 1, results
    assert Wallet.objects.get(org=org).balance_pence == 1000


def test_concurrent_retries_of_one_debit_charge_once():
    org = make_org()
    fund(org, 5000)

    def retry(i: int):
        return services.debit(
            org=org.pk,
            amount_pence=1000,
            type=EntryType.PHONE_PROVISIONING,
            idempotency_key="number-once",
        ).entry

    results = run_at_once(retry, 20)
    assert all(isinstance(r, LedgerEntry) for r in results), results
    assert len({r.pk for r in results}) == 1
    assert Wallet.objects.get(org=org).balance_pence == 4000
