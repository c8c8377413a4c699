"""Benchmark of the wallet: debits/second through billing.services.debit against raw SQL.

    python bench/ledger.py [SECONDS_PER_ROUND]      (`make bench` runs it; default 1.5 s)

Works in a database of its own (created next to DATABASE_URL's, dropped at the end). Two
cases, each with THREADS threads on their own connections: (a) one hot wallet every thread
debits, (b) 1,000 wallets, each debit on a random one. Each case is measured through the
service and, in the same run, through a raw psycopg baseline doing only what a debit must:
SELECT ... FOR NO KEY UPDATE the wallet, UPDATE it, INSERT the ledger row, COMMIT, on the
same tables (so the same triggers, constraints and row-level security). Target: the service
reaches >= 50% of the baseline in both cases.
"""

from __future__ import annotations

import os
import random
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.harness import bench_database, django_setup  # noqa: E402
from bench.table import Row, report  # noqa: E402

BENCH_DB = "voxanne_bench_ledger"
THREADS = 4
WALLETS = 1_000
FUNDS_PENCE = 10**12  # never runs out: every debit is 1p
TARGET_RATIO = 0.5


def make_wallets(n: int) -> list[str]:
    """N orgs with a funded wallet (through the service: one top-up each)."""
    from billing import services
    from billing.models import EntryType
    from voxanne.models import Organization

    orgs = Organization.objects.bulk_create(
        [Organization(clinic_name=f"Bench {i}") for i in range(n)]
    )
    for org in orgs:
        services.credit(
            org=org.pk, amount_pence=FUNDS_PENCE, type=EntryType.TOPUP, idempotency_key="fund"
        )
    return [str(org.pk) for org in orgs]


def run_threads(
    setup: Callable[[], object], debit: Callable[[object, str, str], None], org_ids: list[str]
) -> tuple[int, float]:
    """THREADS threads debit random wallets of `org_ids` until the clock runs out."""
    stop = threading.Event()
    barrier = threading.Barrier(THREADS + 1)
    counts = [0] * THREADS
    errors: list[BaseException] = []

    def work(index: int) -> None:
        rng = random.Random(index)
        state = setup()
        prefix = uuid.uuid4().hex[:8]
        try:
            barrier.wait()
            n = 0
            while not stop.is_set():
                debit(state, rng.choice(org_ids), f"{prefix}-{n}")
                n += 1
            counts[index] = n
        except BaseException as exc:
            errors.append(exc)
            stop.set()
        finally:
            teardown = getattr(state, "close", None)
            if teardown:
                teardown()

    threads = [threading.Thread(target=work, args=(i,)) for i in range(THREADS)]
    for thread in threads:
        thread.start()
    barrier.wait()
    started = time.perf_counter()
    time.sleep(SECONDS)
    stop.set()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    if errors:
        raise errors[0]
    return sum(counts), elapsed


class ServiceThread:
    """Per-thread state of the service runs: the system scope on this thread's connection."""

    def __init__(self) -> None:
        from voxanne.tenancy import system_context

        self.scope = system_context("bench")
        self.scope.__enter__()

    def close(self) -> None:
        from django.db import connection

        self.scope.__exit__(None, None, None)
        connection.close()


def service_debit(state, org_id: str, key: str) -> None:
    from billing import services
    from billing.models import EntryType

    services.debit(
        org=org_id,
        amount_pence=1,
        type=EntryType.PHONE_PROVISIONING,
        idempotency_key=key,
        description="bench",
    )


RAW_LOCK = (
    "SELECT id, balance_pence, last_sequence FROM billing_wallet WHERE org_id = %s"
    " FOR NO KEY UPDATE"
)
RAW_UPDATE = (
    "UPDATE billing_wallet SET balance_pence = %s, last_sequence = %s, updated_at = now()"
    " WHERE id = %s"
)
RAW_INSERT = (
    "INSERT INTO billing_ledger_entry (id, org_id, wallet_id, sequence, type, amount_pence,"
    " balance_after_pence, description, idempotency_key, created_at)"
    " VALUES (%s, %s, %s, %s, 'phone_provisioning', -1, %s, 'bench', %s, now())"
)


def raw_connection():
    import psycopg

    conn = psycopg.connect(os.environ["DATABASE_URL"])
    conn.execute("SELECT set_config('app.system', 'on', false)")
    conn.commit()
    return conn


def raw_debit(conn, org_id: str, key: str) -> None:
    with conn.transaction():
        wallet_id, balance, sequence = conn.execute(RAW_LOCK, [org_id]).fetchone()
        if balance < 1:
            raise RuntimeError("bench wallet ran out")
        conn.execute(RAW_UPDATE, [balance - 1, sequence + 1, wallet_id])
        conn.execute(RAW_INSERT, [uuid.uuid4(), org_id, wallet_id, sequence + 1, balance - 1, key])


def queries_per_debit(org_id: str) -> int:
    from django.db import connection

    count = 0

    def counter(execute, sql, params, many, context):
        nonlocal count
        count += 1
        return execute(sql, params, many, context)

    with connection.execute_wrapper(counter):
        service_debit(None, org_id, f"count-{uuid.uuid4()}")
    return count


SECONDS = 1.5  # per round
ROUNDS = 4
PATHS = {"service": (ServiceThread, service_debit), "raw": (raw_connection, raw_debit)}


def main() -> int:
    with bench_database(BENCH_DB):
        django_setup()
        from billing.reconciliation import reconcile_wallets
        from voxanne.tenancy import system_context

        with system_context("bench"):
            hot = make_wallets(1)
            many = make_wallets(WALLETS)
            queries = queries_per_debit(hot[0])
        # The two paths take turns, ROUNDS times each, so load from anything else on the
        # machine falls on both alike.
        done = {(case, path): [0, 0.0] for case in ("hot", "many") for path in PATHS}
        for case, org_ids in (("hot", hot), ("many", many)):
            for _ in range(ROUNDS):
                for path, (setup, debit) in PATHS.items():
                    count, elapsed = run_threads(setup, debit, org_ids)
                    done[case, path][0] += count
                    done[case, path][1] += elapsed
        results = {key: count / elapsed for key, (count, elapsed) in done.items()}
        with system_context("bench"):
            reconciled = reconcile_wallets()
        rows = []
        for case, label in (
            ("hot", "one hot wallet"),
            ("many", f"{WALLETS:,} wallets"),
        ):
            rows.append(
                Row(
                    figure=f"ledger: debits/s through services.debit, {label}, {THREADS} threads",
                    value=results[case, "service"],
                    unit="debits/s",
                    baseline=results[case, "raw"],
                    baseline_label="debits/s raw psycopg",
                )
            )
        rows.append(
            Row(
                figure="ledger: statements per debit through the service (plus BEGIN/COMMIT)",
                value=queries,
                unit="queries",
                baseline=3,
                baseline_label="raw: SELECT, UPDATE, INSERT",
            )
        )
        report(
            f"bench/ledger.py ({ROUNDS} alternating rounds of {SECONDS:g} s per path and case, "
            f"target ratio >= {TARGET_RATIO})",
            rows,
        )
        if not reconciled.ok:
            print(f"reconciliation failed: {reconciled.mismatches[:3]}", file=sys.stderr)
            return 1
        short = [r.figure for r in rows[:2] if r.ratio is not None and r.ratio < TARGET_RATIO]
        if short:
            print(f"below target: {short}", file=sys.stderr)
        return 0


if __name__ == "__main__":
    if len(sys.argv) > 1:
        SECONDS = float(sys.argv[1])
    sys.exit(main())
