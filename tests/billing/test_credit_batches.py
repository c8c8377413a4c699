"""credit_many: many wallets credited in one transaction, all or none, never deadlocking."""

from __future__ import annotations

import pytest

from billing import services
from billing.models import EntryType, LedgerEntry, Wallet
from billing.reconciliation import reconcile_wallets
from tests.billing.concurrently import run_at_once
from tests.factories import make_org


def bonus(org, key: str = "bonus", pence: int = 1000) -> services.CreditOrder:
    return services.CreditOrder(
        org_id=org.pk, amount_pence=pence, type=EntryType.BONUS, idempotency_key=key
    )


@pytest.mark.django_db
def test_a_batch_credits_every_wallet_once_and_a_retry_replays_it():
    orgs = [make_org(f"Batch {i}") for i in range(5)]
    first = services.credit_many(orders=[bonus(org) for org in orgs])
    assert [p.created for p in first] == [True] * 5
    assert [p.entry.org_id for p in first] == [org.pk for org in orgs]  # in the orders' order
    again = services.credit_many(orders=[bonus(org) for org in orgs])
    assert [p.created for p in again] == [False] * 5
    assert [p.entry.pk for p in again] == [p.entry.pk for p in first]
    assert {Wallet.objects.get(org=org).balance_pence for org in orgs} == {1000}


@pytest.mark.django_db
def test_one_refused_order_rolls_the_whole_batch_back():
    paid, clash = make_org("Paid"), make_org("Clash")
    services.credit_many(orders=[bonus(clash, key="k", pence=500)])
    with pytest.raises(services.IdempotencyKeyReused):
        services.credit_many(orders=[bonus(paid, key="k"), bonus(clash, key="k", pence=1000)])
    assert Wallet.objects.get(org=paid).balance_pence == 0
    assert not LedgerEntry.objects.filter(org=paid).exists()
    assert Wallet.objects.get(org=clash).balance_pence == 500


@pytest.mark.django_db(transaction=True)
def test_batches_over_the_same_wallets_in_opposite_orders_do_not_deadlock():
    orgs = [make_org(f"Shared {i}") for i in range(20)]

    def credit_batch(index: int):
        ordered = orgs if index % 2 else list(reversed(orgs))
        return services.credit_many(
            orders=[bonus(org, key=f"batch-{index}", pence=10) for org in ordered]
        )

    results = run_at_once(credit_batch, threads=6)

    assert not [r for r in results if isinstance(r, Exception)]
    assert {Wallet.objects.get(org=org).balance_pence for org in orgs} == {60}
    assert reconcile_wallets().ok
