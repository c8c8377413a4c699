"""Overlapping runs, a worker that dies, and the real Celery worker: never twice, never lost."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psycopg
import pytest
from django.db import connection

from abandonment.models import AbandonmentEmail, EmailState
from abandonment.services import run_abandonment
from billing.models import EntryType, LedgerEntry, Wallet
from tests.abandonment.conftest import bulk_abandoned_orgs, subprocess_env
from tests.celery_worker import running_celery_worker
from tests.doubles.fixtures import test_database_url
from tests.factories import make_abandoned_org, owner_of

ROOT = Path(__file__).resolve().parents[2]


def wait_for(condition, timeout: float = 30, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def bonus_count(org) -> int:
    return LedgerEntry.objects.filter(org=org, type=EntryType.BONUS).count()


@pytest.mark.django_db(transaction=True)
def test_four_concurrent_runs_send_each_email_once_and_credit_once(smtp_settings):
    orgs = [make_abandoned_org(hours_ago=50) for _ in range(12)]
    start = threading.Barrier(4)
    summaries, errors = [], []

    def one_run():
        try:
            start.wait(timeout=10)
            summaries.append(run_abandonment())
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=one_run) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert errors == []
    assert sum(s.sent["3"] for s in summaries) == 12
    assert sum(s.failed for s in summaries) == 0
    recipients = smtp_settings.recipients()
    assert sorted(recipients) == sorted(owner_of(org).email for org in orgs)
    for org in orgs:
        assert bonus_count(org) == 1
        assert Wallet.objects.get(org=org).balance_pence == 1000
    assert AbandonmentEmail.objects.filter(state=EmailState.SENT, credit_applied=True).count() == 12


@pytest.fixture
def wallet_locker():
    """A second database session that can hold an org's wallet row locked."""
    conn = psycopg.connect(test_database_url())
    conn.execute("SELECT set_config('app.system', 'on', false)")
    yield conn
    conn.close()


def lock_waiters() -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()"
        )
        return cursor.fetchone()[0]


@pytest.mark.django_db(transaction=True)
def test_a_worker_killed_between_send_and_credit_is_completed_by_the_next_run(
    smtp_settings, wallet_locker, tmp_path
):
    org = make_abandoned_org(hours_ago=50)
    # The credit will block on the wallet row, after email 3 went out and was recorded...
    wallet_locker.execute("SELECT 1 FROM billing_wallet WHERE org_id = %s FOR UPDATE", [org.id])
    log = (tmp_path / "run.log").open("w")
    run = subprocess.Popen(
        [sys.executable, "manage.py", "run_abandonment"],
        cwd=ROOT,
        env=subprocess_env(smtp_port=smtp_settings.port),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for(
            lambda: (
                AbandonmentEmail.objects.filter(org=org, state=EmailState.SENT).exists()
                and lock_waiters() > 0
            ),
            what="email 3 sent and the credit waiting",
        )
        # ...and the process dies right there, as a worker killed by the OOM killer would.
        run.send_signal(signal.SIGKILL)
        run.wait(timeout=10)
    finally:
        if run.poll() is None:
            run.kill()
        log.close()
    wallet_locker.rollback()

    row = AbandonmentEmail.objects.get(org=org)
    assert (row.sequence, row.state, row.credit_applied) == (3, EmailState.SENT, False)
    assert bonus_count(org) == 0
    assert smtp_settings.recipients() == [owner_of(org).email]

    summary = run_abandonment()
    assert summary.sent == {"1": 0, "2": 0, "3": 0}
    assert summary.credited == 1
    assert bonus_count(org) == 1
    assert LedgerEntry.objects.get(org=org, type=EntryType.BONUS).amount_pence == 1000
    assert AbandonmentEmail.objects.get(org=org).credit_applied is True
    assert smtp_settings.recipients() == [owner_of(org).email]  # not resent
    assert run_abandonment().credited == 0


@pytest.fixture
def celery_worker(smtp_settings, tmp_path):
    """A real Celery worker process on Redis db of this run and the test database."""
    log_path = tmp_path / "worker.log"
    env = subprocess_env(smtp_port=smtp_settings.port)
    with running_celery_worker(env=env, log_path=log_path) as queue:
        yield queue, log_path


@pytest.mark.django_db(transaction=True)
def test_a_real_celery_worker_runs_the_task_end_to_end(celery_worker, smtp_settings):
    from abandonment.tasks import run_abandonment_pass

    queue, log_path = celery_worker
    org = make_abandoned_org(hours_ago=50)
    run_abandonment_pass.apply_async(queue=queue)

    def done():
        return AbandonmentEmail.objects.filter(org=org, credit_applied=True).exists()

    try:
        wait_for(done, timeout=45, what="the worker's pass")
    except AssertionError:
        raise AssertionError(log_path.read_text()[-3000:]) from None
    assert smtp_settings.recipients() == [owner_of(org).email]
    assert smtp_settings.messages[0][1]["Subject"] == "We added £10 to your account"
    assert bonus_count(org) == 1
    assert "succeeded" in wait_for(
        lambda: "succeeded" in log_path.read_text() and log_path.read_text(), what="task log"
    )


@pytest.mark.django_db(transaction=True)
def test_a_backlog_of_credits_is_paid_inline_exactly_once(settings, mailoutbox):
    from django.db.backends.signals import connection_created

    settings.ABANDONMENT_SEND_CHUNK = 60
    orgs = bulk_abandoned_orgs(150, hours_ago=50)
    connected = set()

    def note(sender, connection, **kwargs):
        connected.add(threading.current_thread().name)

    connection_created.connect(note)
    try:
        summary = run_abandonment()
    finally:
        connection_created.disconnect(note)
    assert summary.sent["3"] == 150
    assert summary.credited == 150
    assert not connected  # paid on the pass's own connection: no thread, no connection of its own
    balances = Wallet.objects.filter(org__in=orgs).values_list("balance_pence", flat=True)
    assert sorted(set(balances)) == [1000] and len(balances) == 150
    assert LedgerEntry.objects.filter(type=EntryType.BONUS).count() == 150
    assert not AbandonmentEmail.objects.filter(credit_applied=False).exists()

    assert run_abandonment().credited == 0
    assert LedgerEntry.objects.filter(type=EntryType.BONUS).count() == 150


@pytest.mark.django_db
def test_one_clinic_whose_credit_is_refused_does_not_stop_the_others_credits(mailoutbox):
    from abandonment.services import credit_key
    from billing.services import credit

    orgs = [make_abandoned_org(hours_ago=50) for _ in range(3)]
    clash = orgs[1]  # its credit key already holds a different amount: billing refuses it
    credit(org=clash, amount_pence=500, type=EntryType.BONUS, idempotency_key=credit_key(clash.pk))

    summary = run_abandonment()

    assert summary.sent["3"] == 3
    assert (summary.credited, summary.failed) == (2, 1)
    balances = [Wallet.objects.get(org=org).balance_pence for org in orgs]
    assert balances == [1000, 500, 1000]
    assert [bonus_count(org) for org in orgs] == [1, 1, 1]
