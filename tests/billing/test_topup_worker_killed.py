"""A gunicorn worker SIGKILLed in the middle of fulfilling a top-up (its transaction has the
inbox row and waits for the wallet): nothing is half-written, and the redelivery or the
reconciler credits once."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest
from django.db import connection

from bench.harness import gunicorn
from billing.models import WebhookEvent
from billing.topups import reconcile_topups
from tests.billing.conftest import assert_books_balance, new_topup, topup_credits
from tests.doubles.fixtures import test_process_env
from tests.factories import make_org

pytestmark = pytest.mark.django_db(transaction=True)


def wait_until(predicate, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


class WalletLocked:
    """Another connection holds the org's wallet row until `release()`."""

    def __init__(self, org_id) -> None:
        self.org_id = org_id
        self.locked, self.released = threading.Event(), threading.Event()
        self.thread = threading.Thread(target=self._hold, daemon=True)

    def _hold(self) -> None:
        try:
            with connection.cursor() as cursor:
                cursor.execute("BEGIN")
                cursor.execute("SELECT set_config('app.system', 'on', true)")
                cursor.execute(
                    "SELECT id FROM billing_wallet WHERE org_id = %s FOR UPDATE", [self.org_id]
                )
                self.locked.set()
                self.released.wait(30)
                cursor.execute("ROLLBACK")
        finally:
            connection.close()

    def __enter__(self) -> WalletLocked:
        self.thread.start()
        assert self.locked.wait(10)
        return self

    def __exit__(self, *exc) -> None:
        self.released.set()
        self.thread.join(10)


def someone_waits_for_a_lock() -> bool:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND wait_event_type = 'Lock' AND query LIKE '%%billing_wallet%%'"
        )
        return cursor.fetchone()[0] > 0


@pytest.mark.parametrize("recovery", ["redelivery", "reconciler"])
def test_a_worker_killed_mid_fulfilment_is_credited_once(api, stripe_double, recovery):
    org = make_org()
    topup = new_topup(api, org, 2500)
    env = test_process_env(**stripe_double.env(), PROVIDER_TIMEOUT_SECONDS="5")
    with gunicorn(env, workers=1, timeout=120) as server:
        stripe_double.webhook_sender = None
        stripe_double.webhook_url = f"{server.url}/api/billing/stripe/webhook"
        with WalletLocked(org.pk):
            paying = threading.Thread(target=stripe_double.pay, args=(topup.stripe_session_id,))
            paying.start()
            wait_until(someone_waits_for_a_lock)  # the worker is inside the transaction
            [victim] = server.worker_pids()
            os.kill(victim, signal.SIGKILL)
            paying.join(30)
        assert [d.status for d in stripe_double.deliveries] == [None]
        assert not WebhookEvent.objects.exists() and topup_credits(org) == []

        if recovery == "reconciler":
            assert reconcile_topups().repaired == [topup.stripe_session_id]
        wait_until(lambda: len(server.worker_pids()) == 1)
        assert stripe_double.redeliver_failed() == [200]
    assert topup_credits(org) == [2500]
    assert WebhookEvent.objects.count() == 1
    assert_books_balance(org)
