"""The database holds the wallet's invariants even when code (or raw SQL) tries to break them."""

from __future__ import annotations

import pytest
from django.db import DatabaseError, IntegrityError, connection, transaction

from billing import services
from billing.models import EntryType, LedgerEntry, Wallet
from tests.factories import make_org

pytestmark = pytest.mark.django_db


def topup(org, pence: int, key: str = "t1"):
    return services.credit(
        org=org, amount_pence=pence, type=EntryType.TOPUP, idempotency_key=key
    ).entry


def test_signup_gives_every_org_an_empty_wallet():
    org = make_org()
    assert Wallet.objects.get(org=org).balance_pence == 0


def test_credit_debit_refund_keep_balance_equal_to_ledger_sum():
    org = make_org()
    topup(org, 2500)
    charge = services.debit(
        org=org, amount_pence=1000, type=EntryType.PHONE_PROVISIONING, idempotency_key="d1"
    ).entry
    services.refund(entry=charge, amount_pence=400, reason="goodwill", idempotency_key="r1")
    wallet = Wallet.objects.get(org=org)
    entries = list(LedgerEntry.objects.for_org(org).order_by("sequence"))
    assert [e.amount_pence for e in entries] == [2500, -1000, 400]
    assert [e.balance_after_pence for e in entries] == [2500, 1500, 1900]
    assert wallet.balance_pence == 1900 == sum(e.amount_pence for e in entries)


def test_debit_below_zero_raises_and_writes_nothing():
    org = make_org()
    topup(org, 999)
    with pytest.raises(services.InsufficientFunds):
        services.debit(
            org=org, amount_pence=1000, type=EntryType.PHONE_PROVISIONING, idempotency_key="d"
        )
    assert Wallet.objects.get(org=org).balance_pence == 999
    assert LedgerEntry.objects.for_org(org).count() == 1


def test_same_key_replays_and_different_request_is_refused():
    org = make_org()
    first = topup(org, 500, key="same")
    assert topup(org, 500, key="same").pk == first.pk
    with pytest.raises(services.IdempotencyKeyReused):
        topup(org, 600, key="same")
    assert Wallet.objects.get(org=org).balance_pence == 500


def test_ledger_rows_cannot_be_updated_or_deleted_even_by_raw_sql():
    org = make_org()
    entry = topup(org, 500)
    for statement in (
        "UPDATE billing_ledger_entry SET amount_pence = 999999 WHERE id = %s",
        "DELETE FROM billing_ledger_entry WHERE id = %s",
    ):
        with pytest.raises(IntegrityError), transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(statement, [entry.pk])
    assert LedgerEntry.objects.get(pk=entry.pk).amount_pence == 500


def test_balance_cannot_go_negative_or_drift_from_the_ledger_by_raw_sql():
    org = make_org()
    topup(org, 500)
    for statement in (
        "UPDATE billing_wallet SET balance_pence = -1 WHERE org_id = %s",
        "UPDATE billing_wallet SET balance_pence = 100000 WHERE org_id = %s",
    ):
        with pytest.raises(IntegrityError), transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(statement, [org.pk])
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
    assert Wallet.objects.get(org=org).balance_pence == 500


def test_refund_beyond_the_remainder_is_refused_by_the_database():
    org = make_org()
    topup(org, 1000)
    charge = services.debit(
        org=org, amount_pence=1000, type=EntryType.PHONE_PROVISIONING, idempotency_key="d"
    ).entry
    services.refund(entry=charge, amount_pence=700, reason="partial", idempotency_key="r1")
    with pytest.raises(services.RefundRefused):
        services.refund(entry=charge, amount_pence=301, reason="too much", idempotency_key="r2")
    # Past the Python check, straight at the table: the trigger refuses it.
    wallet = Wallet.objects.get(org=org)
    with pytest.raises(DatabaseError), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            "UPDATE billing_wallet SET balance_pence = balance_pence + 301, last_sequence = last_sequence + 1"
            " WHERE id = %s",
            [wallet.pk],
        )
        cursor.execute(
            "INSERT INTO billing_ledger_entry (id, org_id, wallet_id, sequence, type, amount_pence,"
            " balance_after_pence, description, reverses_id, idempotency_key, created_at)"
            " VALUES (gen_random_uuid(), %s, %s, %s, 'refund', 301, %s, 'raw', %s, 'raw', now())",
            [org.pk, wallet.pk, wallet.last_sequence + 1, wallet.balance_pence + 301, charge.pk],
        )
    assert services.refundable_remainder(charge) == 300


def test_hold_and_release_give_the_money_back_exactly_once():
    org = make_org()
    topup(org, 1000)
    with transaction.atomic():
        hold = services.hold_for_provisioning(
            wallet=services.lock_wallet(org), idempotency_key="attempt-1", description="hold"
        ).entry
    assert Wallet.objects.get(org=org).balance_pence == 0
    first = services.release_hold(hold=hold, reason="provider failed").entry
    again = services.release_hold(hold=hold, reason="provider failed").entry
    assert first.pk == again.pk and first.amount_pence == 1000
    assert Wallet.objects.get(org=org).balance_pence == 1000
