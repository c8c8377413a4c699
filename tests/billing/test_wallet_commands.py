"""manage.py wallet_credit and reconcile_wallets."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import uuid
from io import StringIO

import pytest
from django.apps import apps as django_apps
from django.core.management import CommandError, call_command
from django.db import connection
from django_celery_beat.models import PeriodicTask

from billing.models import EntryType, LedgerEntry, Wallet
from billing.tasks import reconcile_wallets as reconcile_wallets_task
from tests.factories import charge, fund, make_org

pytestmark = pytest.mark.django_db


def run(*args) -> str:
    out = StringIO()
    call_command(*args, stdout=out, stderr=out)
    return out.getvalue()


def test_wallet_credit_adds_a_topup_with_the_reason():
    org = make_org()
    output = run("wallet_credit", str(org.pk), "2500", "--reason", "Paid by card")
    [entry] = LedgerEntry.objects.for_org(org)
    assert (entry.type, entry.amount_pence, entry.description, entry.created_by) == (
        EntryType.TOPUP,
        2500,
        "Paid by card",
        None,
    )
    assert Wallet.objects.get(org=org).balance_pence == 2500
    assert "£25.00" in output


def test_wallet_credit_with_the_same_key_adds_once():
    org = make_org()
    args = ("wallet_credit", str(org.pk), "500", "--reason", "r", "--idempotency-key", "inv-1")
    run(*args)
    assert "Already added" in run(*args)
    assert Wallet.objects.get(org=org).balance_pence == 500


@pytest.mark.parametrize(
    "org_id,amount,message",
    [
        ("not-a-uuid", "100", "is not an organization id"),
        (str(uuid.uuid4()), "100", "No organization with id"),
        (None, "abc", "is not a whole number of pence"),
        (None, "1.50", "is not a whole number of pence"),
        (None, "0", "must be a positive number"),
        (None, "-5", "must be a positive number"),
    ],
)
def test_wallet_credit_refuses_a_bad_org_or_amount(org_id, amount, message):
    org = make_org()
    with pytest.raises(CommandError, match=message):
        run("wallet_credit", org_id or str(org.pk), amount, "--reason", "r")
    assert LedgerEntry.objects.for_org(org).count() == 0


def test_wallet_credit_exits_non_zero_with_a_clear_message():
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "voxanne.settings"}
    result = subprocess.run(
        [sys.executable, "manage.py", "wallet_credit", "clinic-42", "100", "--reason", "r"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert result.returncode != 0
    assert "'clinic-42' is not an organization id" in result.stderr


def test_reconcile_passes_when_every_wallet_matches_its_ledger():
    orgs = [make_org(f"Clinic {i}") for i in range(5)]
    for org in orgs:
        fund(org, 3000)
        charge(org, 1000)
    output = run("reconcile_wallets", "--batch-size", "2")
    assert f"Checked {Wallet.objects.count()} wallets" in output
    assert "0 mismatched" in output


def _without_balance_checks(*statements: str) -> None:
    """Break a wallet the way only a bug with table-owner rights could (test transaction only)."""
    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")  # no pending trigger events before ALTER
        cursor.execute("ALTER TABLE billing_wallet DISABLE TRIGGER wallet_matches_ledger")
        try:
            for statement in statements:
                cursor.execute(statement)
        finally:
            cursor.execute("ALTER TABLE billing_wallet ENABLE TRIGGER wallet_matches_ledger")


def test_reconcile_finds_a_balance_that_drifted_from_the_ledger():
    healthy, broken = make_org("Healthy"), make_org("Broken")
    fund(healthy, 1000)
    fund(broken, 1000)
    _without_balance_checks(
        f"UPDATE billing_wallet SET balance_pence = 1500 WHERE org_id = '{broken.pk}'"
    )
    with pytest.raises(CommandError, match="1 mismatched"):
        run("reconcile_wallets", "--batch-size", "1")
    err = StringIO()
    with pytest.raises(CommandError):
        call_command("reconcile_wallets", stdout=StringIO(), stderr=err)
    assert f"MISMATCH org {broken.pk}" in err.getvalue()
    assert str(healthy.pk) not in err.getvalue()


def test_reconcile_finds_a_negative_balance_the_ledger_does_not_explain():
    org = make_org()
    _without_balance_checks(
        f"UPDATE billing_wallet SET balance_pence = -100 WHERE org_id = '{org.pk}'",
    )
    err = StringIO()
    with pytest.raises(CommandError, match="1 mismatched"):
        call_command("reconcile_wallets", stdout=StringIO(), stderr=err)
    assert "balance differs from the sum of the ledger" in err.getvalue()


def test_the_daily_reconcile_task_counts_and_logs_mismatches(caplog):
    broken = make_org("Broken")
    fund(broken, 1000)
    assert reconcile_wallets_task() == 0
    _without_balance_checks(
        f"UPDATE billing_wallet SET balance_pence = 1 WHERE org_id = '{broken.pk}'"
    )
    with caplog.at_level("ERROR", logger="billing.reconciliation"):
        assert reconcile_wallets_task() == 1
    [record] = [r for r in caplog.records if r.levelname == "ERROR"]
    assert record.org_id == str(broken.pk)


def test_the_reconcile_schedule_is_data_created_once():
    schedule = importlib.import_module("billing.migrations.0003_reconcile_wallets_schedule")
    schedule.create_schedule(django_apps, None)
    schedule.create_schedule(django_apps, None)
    [task] = PeriodicTask.objects.filter(name=schedule.TASK_NAME)
    assert task.task == reconcile_wallets_task.name and task.crontab.hour == "3"
