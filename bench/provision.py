"""Benchmark of paid provisioning: provisions/second and p50/p95 latency over real HTTP, next to
the same server's /healthz in the same run.

    python bench/provision.py [PROVISIONS]      (`make bench` runs it; default 200)

Works in a database of its own (created next to DATABASE_URL's, dropped at the end). Starts
gunicorn (WORKERS workers, gunicorn.conf.py otherwise) against it with Twilio and Vapi served by
the zero-latency doubles of sandbox/, funds PROVISIONS clinics, then CLIENTS client threads each POST
/api/onboarding/provision-number for their own clinics (every request a full paid
provisioning: hold, subaccount, search, buy, import, settle: 5 provider calls, ~20
statements). The baseline is the same gunicorn answering /healthz to the
same client threads. Checked afterwards: every clinic has one number and a wallet equal to its ledger.
"""

from __future__ import annotations

import os
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

BENCH_DB = "voxanne_bench_provision"
WORKERS = 4
CLIENTS = 4
PROVISIONS = 200


def main() -> int:
    with bench_database(BENCH_DB):
        django_setup()
        return measure()


def measure() -> int:
    from billing.models import EntryType
    from billing.services import credit
    from onboarding.models import ManagedPhoneNumber
    from sandbox.twilio import TwilioDouble
    from sandbox.vapi import VapiDouble
    from voxanne.auth import tokens_for
    from voxanne.tenancy import system_context

    twilio = TwilioDouble().start()
    vapi = VapiDouble(twilio=twilio).start()
    try:
        with system_context("bench"):
            tokens = []
            for signed in sign_up_clinics(PROVISIONS):
                credit(
                    org=signed.organization,
                    amount_pence=5000,
                    type=EntryType.TOPUP,
                    idempotency_key="bench-topup",
                )
                tokens.append(tokens_for(signed.user)["access"])
        path = "/api/onboarding/provision-number"
        with gunicorn({**os.environ, **twilio.env(), **vapi.env()}, workers=WORKERS) as server:
            health_s, health = healthz_baseline(server.url, PROVISIONS, clients=CLIENTS)
            provisions = [
                ("POST", path, {"json": {}, "headers": {"Authorization": f"Bearer {token}"}})
                for token in tokens
            ]
            prov_s, prov = closed_loop(server.url, provisions, clients=CLIENTS)

        with system_context("bench check"):
            numbers = ManagedPhoneNumber.objects.filter(status="active").count()
        mismatched = wallets_off_their_ledger()
        assert numbers == PROVISIONS == len(twilio.owned_numbers()) == len(vapi.imports)
        assert not mismatched, mismatched[:3]

        label = f"/healthz, same server, {CLIENTS} clients"
        rows = [
            Row(
                figure=f"provision: provisions/s over HTTP ({CLIENTS} clients, {WORKERS} workers)",
                value=PROVISIONS / prov_s,
                unit="provisions/s",
                baseline=PROVISIONS / health_s,
                baseline_label=f"req/s {label}",
            ),
            Row(
                figure="provision: p50 latency",
                value=percentile(prov, 50),
                unit="ms",
                baseline=percentile(health, 50),
                baseline_label=f"ms {label}",
            ),
            Row(
                figure="provision: p95 latency",
                value=percentile(prov, 95),
                unit="ms",
                baseline=percentile(health, 95),
                baseline_label=f"ms {label}",
            ),
        ]
        report(
            f"bench/provision.py ({PROVISIONS} paid provisions against zero-latency doubles; "
            f"all {numbers} numbers stored, every wallet equal to its ledger)",
            rows,
        )
        return 0
    finally:
        vapi.stop()
        twilio.stop()


if __name__ == "__main__":
    if len(sys.argv) > 1:
        PROVISIONS = int(sys.argv[1])
    sys.exit(main())
