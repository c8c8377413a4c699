"""Benchmark of one abandonment pass: N abandoned clinics, one run, the locmem email backend.

    python bench/abandonment.py [N ...]      (`make bench` runs it with 1,000 / 10,000 / 100,000)

Works in a database of its own (created next to DATABASE_URL's and dropped at the end), so
nothing is written to the application's data. Seeds with one bulk INSERT per table: per
abandoned org an owner, a wallet and one payment_viewed event, a third each at 2 h, 30 h and
50 h (emails 1, 2 and 3 with its £10 credit), beside N/10 paying clinics (so the ledger is not
empty when the planner looks at it). The pass runs as the scheduled task runs it: SHARDS shard
tasks at once, here one forked process each. Prints one table: figure, value, baseline, ratio.
Baselines: the original system's promise (100 orgs in 5 s = 20 orgs/s), and a per-org pass
(the original design: a few queries per org) measured in the same run on 1,000 orgs.
"""

from __future__ import annotations

import os
import sys
import time
import uuid
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.harness import bench_database, django_setup  # noqa: E402
from bench.table import Row, report  # noqa: E402

BENCH_DB = "voxanne_bench_abandonment"
SIZES = [1_000, 10_000, 100_000]
PROMISE_ORGS_PER_SECOND = 100 / 5
TARGET_ORGS_PER_SECOND = 1_000  # issue 13: the floor with the stock email path
SHARDS = 2  # as ABANDONMENT_SHARDS: the scheduled pass runs as this many shard tasks


class QueryCounter:
    """Counts statements, and which of them are billing's (the credits)."""

    def __init__(self) -> None:
        self.count = 0
        self.credits = 0  # billing's statements: they touch only billing's tables

    def __call__(self, execute, sql, params, many, context):
        self.count += 1
        self.credits += "billing_" in sql
        return execute(sql, params, many, context)


def _insert(cursor, table: str, columns: dict[str, str], rows: list[tuple]) -> None:
    """One INSERT ... SELECT FROM unnest(arrays) per table (COPY is refused under RLS)."""
    arrays = [list(column) for column in zip(*rows, strict=True)]
    names = ", ".join(columns)
    unnest = ", ".join(f"%s::{kind}[]" for kind in columns.values())
    cursor.execute(f"INSERT INTO {table} ({names}) SELECT * FROM unnest({unnest})", arrays)


ORG = {
    "id": "uuid",
    "clinic_name": "text",
    "owner_id": "uuid",
    "onboarding_completed_at": "timestamptz",
    "created_at": "timestamptz",
    "updated_at": "timestamptz",
}
USER = {
    "id": "uuid",
    "password": "text",
    "is_superuser": "bool",
    "email": "text",
    "organization_id": "uuid",
    "is_active": "bool",
    "is_staff": "bool",
    "email_verified_at": "timestamptz",  # the bonus is for verified owners
    "created_at": "timestamptz",
    "updated_at": "timestamptz",
}
WALLET = {
    "id": "uuid",
    "org_id": "uuid",
    "balance_pence": "int8",
    "last_sequence": "int8",
    "frozen_reason": "text",
    "low_balance_pence": "int8",
    "created_at": "timestamptz",
    "updated_at": "timestamptz",
}
LEDGER = {
    "id": "uuid",
    "org_id": "uuid",
    "wallet_id": "uuid",
    "sequence": "int8",
    "type": "text",
    "amount_pence": "int8",
    "balance_after_pence": "int8",
    "description": "text",
    "idempotency_key": "text",
    "created_at": "timestamptz",
}
EVENT = {
    "id": "uuid",
    "org_id": "uuid",
    "user_id": "uuid",
    "event_name": "text",
    "step_index": "int2",
    "metadata": "jsonb",
    "session_id": "text",
    "created_at": "timestamptz",
}


def seed(n: int) -> None:
    """N abandoned clinics, a third at each email's stage, beside N/10 paying ones.

    Abandoned: owner, empty wallet, one payment_viewed. Paying (what a real database also
    holds, so the ledger is not empty when the planner looks at it): payment viewed and
    succeeded, a £20 top-up, half of them with onboarding completed.
    """
    from django.db import connection, transaction
    from django.utils import timezone

    now = timezone.now()
    viewed_at = [now - timedelta(hours=h) for h in (2, 30, 50)]
    paying = max(n // 10, 100)
    orgs = [uuid.uuid4() for _ in range(n + paying)]
    users = [uuid.uuid4() for _ in orgs]
    wallets = [uuid.uuid4() for _ in orgs]
    with transaction.atomic(), connection.cursor() as cursor:
        # Org and owner point at each other; the foreign keys are checked at commit.
        _insert(
            cursor,
            "voxanne_organization",
            ORG,
            [
                (org, f"Clinic {i}", users[i], now if i >= n and i % 2 else None, now, now)
                for i, org in enumerate(orgs)
            ],
        )
        _insert(
            cursor,
            "voxanne_user",
            USER,
            [
                (user, "!", False, f"owner-{user}@bench.test", orgs[i], True, False, now, now, now)
                for i, user in enumerate(users)
            ],
        )
        _insert(
            cursor,
            "billing_wallet",
            WALLET,
            [
                (wallets[i], org, 0 if i < n else 2000, 0 if i < n else 1, "", 500, now, now)
                for i, org in enumerate(orgs)
            ],
        )
        _insert(
            cursor,
            "billing_ledger_entry",
            LEDGER,
            [
                (uuid.uuid4(), orgs[i], wallets[i], 1, "topup", 2000, 2000, "top-up", "seed", now)
                for i in range(n, n + paying)
            ],
        )
        events = [
            (uuid.uuid4(), org, users[i], "payment_viewed", 3, "{}", "", viewed_at[i % 3])
            for i, org in enumerate(orgs)
        ]
        events += [
            (uuid.uuid4(), orgs[i], users[i], "payment_success", 3, "{}", "", now)
            for i in range(n, n + paying)
        ]
        _insert(cursor, "onboarding_onboardingevent", EVENT, events)
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")


def wipe() -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "TRUNCATE abandonment_email, abandonment_opt_out, billing_ledger_entry, "
            "billing_wallet, onboarding_onboardingevent, voxanne_user, voxanne_organization "
            "CASCADE"
        )


def _one_shard(shard_index: int) -> tuple[int, int, dict]:
    """Run one shard of the pass in this (forked) process: (statements, credit ones, summary)."""
    from django.db import connection, connections

    from abandonment.services import Shard, run_abandonment
    from voxanne.tenancy import system_context

    counter = QueryCounter()
    try:
        with system_context("bench"), connection.execute_wrapper(counter):
            summary = run_abandonment(shard=Shard(shard_index, SHARDS))
    finally:
        connections.close_all()
    return counter.count, counter.credits, summary.as_dict()


def one_pass() -> tuple[float, QueryCounter, dict]:
    """One pass as the scheduled task runs it: SHARDS shard tasks at once, one per process."""
    import multiprocessing

    from django.db import connections

    connections.close_all()  # a forked child must not share this process's connection
    started = time.perf_counter()
    with multiprocessing.get_context("fork").Pool(SHARDS) as pool:
        results = pool.map(_one_shard, range(SHARDS))
    elapsed = time.perf_counter() - started
    counter = QueryCounter()
    summary = {"sent": {"1": 0, "2": 0, "3": 0}, "credited": 0, "failed": 0}
    for count, credits, part in results:
        counter.count += count
        counter.credits += credits
        for key in ("credited", "failed"):
            summary[key] += part[key]
        for key, value in part["sent"].items():
            summary["sent"][key] += value
    return elapsed, counter, summary


def per_org_pass() -> float:
    """The original design, for a baseline: a few queries per org, one email at a time."""
    from django.core.mail import EmailMultiAlternatives, get_connection
    from django.utils import timezone

    from abandonment.emails import subject_for
    from abandonment.services import THRESHOLDS
    from billing.models import LedgerEntry
    from onboarding.models import OnboardingEvent
    from voxanne.models import Organization

    started = time.perf_counter()
    now = timezone.now()
    backend = get_connection()
    viewed = OnboardingEvent.objects.filter(event_name="payment_viewed")
    for org_id in viewed.values_list("org_id", flat=True).distinct():
        first = viewed.filter(org_id=org_id).order_by("created_at").first()
        if LedgerEntry.objects.filter(org_id=org_id, type="topup").exists():  # paid
            continue
        org = Organization.objects.select_related("owner").get(pk=org_id)
        elapsed = now - first.created_at
        sequence = next((s for s, t in THRESHOLDS.items() if elapsed >= t), None)
        if sequence is None or org.onboarding_completed_at:
            continue
        message = EmailMultiAlternatives(
            subject_for(sequence, org.clinic_name), "text", to=[org.owner.email]
        )
        message.attach_alternative("<p>html</p>", "text/html")
        backend.send_messages([message])
    return time.perf_counter() - started


def main(sizes: list[int]) -> int:
    os.environ["EMAIL_BACKEND"] = "django.core.mail.backends.locmem.EmailBackend"
    with bench_database(BENCH_DB):
        django_setup()
        from voxanne.tenancy import system_context

        rows = []
        with system_context("bench"):
            seed(1_000)
            naive = 1_000 / per_org_pass()
            wipe()
            for n in sizes:
                seed_started = time.perf_counter()
                seed(n)
                seeded = time.perf_counter() - seed_started
                elapsed, queries, summary = one_pass()
                rate = n / elapsed
                sent = sum(summary["sent"].values())
                if sent != n or summary["failed"]:
                    print(f"N={n}: sent {sent}, failed {summary['failed']}", file=sys.stderr)
                    return 1
                rows += [
                    Row(
                        f"abandonment: N={n:,} orgs/s (pass {elapsed:.2f} s, seed {seeded:.1f} s)",
                        rate,
                        "orgs/s",
                        PROMISE_ORGS_PER_SECOND,
                        "orgs/s original promise",
                    ),
                    Row(
                        f"abandonment: N={n:,} orgs/s vs a per-org pass",
                        rate,
                        "orgs/s",
                        naive,
                        "orgs/s per-org pass (1,000 orgs)",
                    ),
                    Row(
                        f"abandonment: N={n:,} statements, job's own (credits excluded)",
                        queries.count - queries.credits,
                        "queries",
                        n,
                        "one per org",
                    ),
                    Row(
                        f"abandonment: N={n:,} statements, all ({summary['credited']:,} credits)",
                        queries.count,
                        "queries",
                        n,
                        "one per org",
                    ),
                ]
                wipe()
        report(
            f"bench/abandonment.py (one pass as {SHARDS} shard processes, locmem email; target: "
            "100,000 orgs at >= "
            f"{TARGET_ORGS_PER_SECOND:,} orgs/s)",
            rows,
        )
        return 0


if __name__ == "__main__":
    args = [int(a.replace(",", "").replace("_", "")) for a in sys.argv[1:]]
    sys.exit(main(args or SIZES))
