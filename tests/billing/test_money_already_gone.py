"""The ledger's one non-negative rule: money already gone is always recorded (even below zero);
a decision to spend is refused below zero. Held by the database, not only by Python."""

from __future__ import annotations

import uuid

import pytest
from django.db import IntegrityError, connection, transaction

from billing import services
from billing.models import EntryType, LedgerEntry, Wallet
from tests.factories import charge, fund, make_org

pytestmark = pytest.mark.django_db


def _gone(org, pence: int, type: str = EntryType.CARD_REFUND, key: str = "refund:re_1"):
    with transaction.atomic():
        return services.record_money_gone(
            org=org, amount_pence=pence, type=type, idempotency_key=key, description="gone"
        )


def test_a_refund_to_the_card_is_recorded_even_below_zero_and_replays_by_key():
    org = make_org()
    fund(org, 1000)
    first = _gone(org, 2500)
    again = _gone(org, 2500)
    assert first.created and not again.created and again.entry.pk == first.entry.pk
    assert Wallet.objects.get(org=org).balance_pence == -1500
    chargeback = _gone(org, 500, EntryType.CHARGEBACK, "chargeback:dp_1").entry
    assert chargeback.balance_after_pence == -2000


def test_a_negative_balance_refuses_spending_and_a_topup_climbs_back():
    org = make_org()
    _gone(org, 500)
    with pytest.raises(services.InsufficientFunds):
        charge(org, 100)
    fund(org, 300)  # a credit may still end below zero
    assert Wallet.objects.get(org=org).balance_pence == -200
    fund(org, 1200)
    charge(org, 1000)
    assert Wallet.objects.get(org=org).balance_pence == 0


def test_only_money_gone_types_may_be_recorded_that_way():
    org = make_org()
    with pytest.raises(ValueError):
        _gone(org, 100, EntryType.PHONE_PROVISIONING)


def _raw_entry(org, *, type: str, amount: int) -> None:
    """Append an entry by raw SQL, chain and wallet kept consistent: only the rule can refuse."""
    wallet = Wallet.objects.get(org=org)
    after = wallet.balance_pence + amount
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO billing_ledger_entry (id, org_id, wallet_id, sequence, type, amount_pence,"
            " balance_after_pence, description, idempotency_key, created_at)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, '', %s, now())",
            [
                uuid.uuid4(),
                org.pk,
                wallet.pk,
                wallet.last_sequence + 1,
                type,
                amount,
                after,
                f"raw-{uuid.uuid4()}",
            ],
        )
        cursor.execute(
            "UPDATE billing_wallet SET balance_pence = %s, last_sequence = last_sequence + 1"
            " WHERE id = %s",
            [after, wallet.pk],
        )
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")


@pytest.mark.parametrize("type", [EntryType.PHONE_PROVISIONING, EntryType.ADJUSTMENT])
def test_the_database_refuses_spending_below_zero_even_by_raw_sql(type):
    org = make_org()
    fund(org, 500)
    with pytest.raises(IntegrityError), transaction.atomic():
        _raw_entry(org, type=type, amount=-501)
    assert Wallet.objects.get(org=org).balance_pence == 500


def test_the_database_accepts_money_gone_below_zero_and_keeps_balance_equal_to_ledger():
    org = make_org()
    fund(org, 500)
    with transaction.atomic():
        _raw_entry(org, type=EntryType.CHARGEBACK, amount=-800)
    total = sum(LedgerEntry.objects.filter(org=org).values_list("amount_pence", flat=True))
    assert Wallet.objects.get(org=org).balance_pence == -300 == total
    with pytest.raises(IntegrityError), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("UPDATE billing_wallet SET balance_pence = -1 WHERE org_id = %s", [org.pk])
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
