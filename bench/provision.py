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
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.harness import bench_database, django_setup, gunicorn, percentile  # noqa: E402
from bench.table import Row, report  # noqa: E402

BENCH_DB = "voxanne_bench_provision"
WORKERS = 4
CLIENTS = 4
PROVISIONS = 200


def _drive(base: str, requests: list[tuple[str, str, str | None]]) -> tuple[float, list[float]]:
    """CLIENTS threads share `requests` (method, path, token); returns (elapsed, latencies)."""
    import httpx

    latencies: list[float] = []
    failures: list[str] = []
    lock = threading.Lock()
    queue = list(reversed(requests))
    start = threading.Barrier(CLIENTS + 1)

    def client() -> None:
        with httpx.Client(base_url=base, timeout=60) as http:
            start.wait()
            while True:
                with lock:
                    if not queue:
                        return
                    method, path, token = queue.pop()
                headers = {"Authorization": f"Bearer {token}"} if token else {}
                began = time.perf_counter()
                response = http.request(method, path, headers=headers, json={} if token else None)
                took = time.perf_counter() - began
                with lock:
                    latencies.append(took)
                    if response.status_code != 200:
                        failures.append(f"{response.status_code} {response.text[:200]}")

    threads = [threading.Thread(target=client) for _ in range(CLIENTS)]
    for thread in threads:
        thread.start()
    start.wait()
    began = time.perf_counter()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - began
    if failures:
        sys.exit(f"{len(failures)} requests failed, e.g. {failures[0]}")
    return elapsed, latencies


def main() -> int:
    with bench_database(BENCH_DB):
        django_setup()
        return measure()


def measure() -> int:
    from django.db.models import Sum

    from billing.models import EntryType, LedgerEntry, Wallet
    from billing.services import credit
    from onboarding.models import ManagedPhoneNumber
    from sandbox.twilio import TwilioDouble
    from sandbox.vapi import VapiDouble
    from voxanne import services
    from voxanne.auth import tokens_for
    from voxanne.tenancy import system_context

    twilio = TwilioDouble().start()
    vapi = VapiDouble(twilio=twilio).start()
    try:
        with system_context("bench"):
            tokens = []
            for i in range(PROVISIONS):
                signed = services.sign_up(
                    email=f"bench{i}@clinic.test",
                    password="bench-password-1234",
                    clinic_name=f"Bench {i}",
                )
                credit(
                    org=signed.organization,
                    amount_pence=5000,
                    type=EntryType.TOPUP,
                    idempotency_key="bench-topup",
                )
                tokens.append(tokens_for(signed.user)["access"])
        path = "/api/onboarding/provision-number"
        with gunicorn({**os.environ, **twilio.env(), **vapi.env()}, workers=WORKERS) as server:
            base = server.url
            _drive(base, [("GET", "/healthz", None)] * 200)  # warm-up: imports, connections
            health_s, health = _drive(base, [("GET", "/healthz", None)] * PROVISIONS)
            prov_s, prov = _drive(base, [("POST", path, token) for token in tokens])

        with system_context("bench check"):
            numbers = ManagedPhoneNumber.objects.filter(status="active").count()
            wallets = Wallet.objects.values_list("org_id", "balance_pence")
            sums = dict(
                LedgerEntry.objects.values("org_id")
                .annotate(s=Sum("amount_pence"))
                .values_list("org_id", "s")
            )
            mismatched = [org for org, balance in wallets if sums.get(org, 0) != balance]
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
