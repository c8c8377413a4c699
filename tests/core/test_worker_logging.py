"""A real Celery worker logs as the web does: one JSON line per record, `extra` fields kept."""

from __future__ import annotations

import json
import time

import pytest
from django.db import connection, transaction

from billing.tasks import reconcile_wallets
from tests.celery_worker import running_celery_worker
from tests.doubles.fixtures import test_process_env
from tests.factories import fund, make_org


def json_lines(text: str) -> list[dict]:
    records = []
    for line in text.splitlines():
        try:
            records.append(json.loads(line))
        except ValueError:
            continue  # the worker's start-up banner is printed, not logged
    return records


def wait_for_record(log_path, message: str, timeout: float = 45) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for record in json_lines(log_path.read_text()):
            if record.get("message") == message:
                return record
        time.sleep(0.1)
    raise AssertionError(
        f"no {message!r} record in the worker's output:\n{log_path.read_text()[-3000:]}"
    )


def break_wallet(org, balance_pence: int) -> None:
    """A balance that drifted from the ledger, committed, as only a bug with owner rights could."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        cursor.execute("ALTER TABLE billing_wallet DISABLE TRIGGER wallet_matches_ledger")
        cursor.execute(
            "UPDATE billing_wallet SET balance_pence = %s WHERE org_id = %s",
            [balance_pence, org.pk],
        )
        cursor.execute("ALTER TABLE billing_wallet ENABLE TRIGGER wallet_matches_ledger")


@pytest.mark.django_db(transaction=True)
def test_the_ledger_alert_comes_out_of_a_worker_as_json_with_its_facts(tmp_path):
    org = make_org("Drifted")
    fund(org, 1000)
    break_wallet(org, 1500)
    log_path = tmp_path / "worker.log"
    env = test_process_env(LOG_FORMAT="json", PYTHONUNBUFFERED="1")
    with running_celery_worker(env=env, log_path=log_path) as queue:
        reconcile_wallets.apply_async(queue=queue)
        alert = wait_for_record(log_path, "wallet does not match its ledger")
        finished = wait_for_record(log_path, "wallets reconciled")
    assert alert["level"] == "ERROR" and alert["logger"] == "billing.reconciliation"
    assert alert["org_id"] == str(org.pk)
    assert (alert["balance_pence"], alert["ledger_sum_pence"]) == (1500, 1000)
    assert alert["problems"] == ["balance differs from the sum of the ledger"]
    assert (finished["wallets"], finished["mismatched"]) == (1, 1)
    # Celery's own records go the same way (its formatter would print "[... ERROR/...]").
    assert any(r["logger"].startswith("celery") for r in json_lines(log_path.read_text()))
