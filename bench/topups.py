"""Benchmark of the Stripe webhook: deliveries/second and p99 over real HTTP through gunicorn,
next to the same server's /healthz in the same run, then the invariant.

    python bench/topups.py [DELIVERIES]      (`make bench ARGS=topups`; default 1000)

Works in a database of its own (created next to DATABASE_URL's, dropped at the end). 200
clinics start 4 top-ups each through the Stripe double (sandbox/stripe.py); every session is
paid, which makes 800 signed `checkout.session.completed` events. DELIVERIES deliveries (the
800, plus 20% duplicates of them, shuffled) are POSTed by CLIENTS client threads to
/api/billing/stripe/webhook on gunicorn (WORKERS threaded workers). The baseline is the same
gunicorn answering /healthz to the same client threads. Checked afterwards: every delivery
answered 200, every paid session credited exactly once, every wallet equal to its ledger.
Target: at least 250 deliveries/s and p99 under 250 ms on the 2-core machine.
"""

from __future__ import annotations

import os
import random
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.harness import (  # noqa: E402
    bench_database,
    closed_loop,
    django_setup,
    gunicorn,
    healthz_baseline,
    percentile,
    sign_up_clinics,
    wallets_off_their_ledger,
)
from bench.table import Row, report  # noqa: E402

BENCH_DB = "voxanne_bench_topups"
WORKERS = 2
CLIENTS = 8
ORGS = 200
TOPUPS_PER_ORG = 4
DELIVERIES = 1000
WEBHOOK = "/api/billing/stripe/webhook"


def main() -> int:
    with bench_database(BENCH_DB):
        django_setup()
        return measure()


def measure() -> int:
    from django.conf import settings
    from django.db.models import Count

    from billing.models import LedgerEntry, TopUp, WebhookEvent
    from billing.topups import start_topup
    from sandbox.stripe import StripeDouble
    from voxanne.tenancy import system_context

    stripe = StripeDouble().start()
    try:
        for name, value in stripe.env().items():
            setattr(settings, name, value)
        with system_context("bench"):
            for signed in sign_up_clinics(ORGS):
                for _ in range(TOPUPS_PER_ORG):
                    start_topup(org=signed.organization, amount_pence=2500)
        stripe.hold()
        for session_id in list(stripe.sessions):
            stripe.pay(session_id)
        events = stripe.take_held()
        rng = random.Random(14)
        chosen = events + [rng.choice(events) for _ in range(DELIVERIES - len(events))]
        rng.shuffle(chosen)
        deliveries = []
        for event in chosen:
            body, headers = stripe.signed(event)
            deliveries.append(("POST", WEBHOOK, {"content": body, "headers": headers}))

        env = {**os.environ, **stripe.env()}
        with gunicorn(env, workers=WORKERS) as server:
            health_s, health = healthz_baseline(server.url, DELIVERIES, clients=CLIENTS)
            hook_s, hooks = closed_loop(server.url, deliveries, clients=CLIENTS)

        with system_context("bench check"):
            keys = (
                LedgerEntry.objects.filter(type="topup")
                .values("idempotency_key")
                .annotate(n=Count("id"))
            )
            credited_once = {k["idempotency_key"] for k in keys if k["n"] == 1}
            expected = {f"topup:{s}" for s in stripe.sessions}
            paid = TopUp.objects.filter(status="paid").count()
            inbox = WebhookEvent.objects.count()
        mismatched = wallets_off_their_ledger()
        assert credited_once == expected and len(keys) == len(expected), "not credited once"
        assert paid == len(events) == inbox, (paid, len(events), inbox)
        assert not mismatched, mismatched[:3]

        label = f"/healthz, same server, {CLIENTS} clients"
        rows = [
            Row(
                figure=f"topups: webhook deliveries/s ({CLIENTS} clients, {WORKERS} workers)",
                value=DELIVERIES / hook_s,
                unit="deliveries/s",
                baseline=DELIVERIES / health_s,
                baseline_label=f"req/s {label}",
            ),
            Row(
                figure="topups: webhook p50 latency",
                value=percentile(hooks, 50),
                unit="ms",
                baseline=percentile(health, 50),
                baseline_label=f"ms {label}",
            ),
            Row(
                figure="topups: webhook p99 latency",
                value=percentile(hooks, 99),
                unit="ms",
                baseline=percentile(health, 99),
                baseline_label=f"ms {label}",
            ),
        ]
        report(
            f"bench/topups.py ({DELIVERIES} deliveries of {len(events)} events, shuffled; "
            f"every paid session credited once, every wallet equal to its ledger)",
            rows,
        )
        return 0
    finally:
        stripe.stop()


if __name__ == "__main__":
    if len(sys.argv) > 1:
        DELIVERIES = int(sys.argv[1])
    sys.exit(main())
