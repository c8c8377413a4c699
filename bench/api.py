"""Authenticated reads against their floor: requests/s of GET /api/onboarding/status and
GET /api/billing/wallet next to GET /api/bench/floor, on the same gunicorn in the same run.

    python bench/api.py [REQUESTS]      (`make bench` runs it; default 2000 per endpoint)

The floor exists only in this benchmark's URLconf (bench/floor/): the same middleware and JWT
authentication as every API read, then one primary-key SELECT. What a read costs above it is
its own work: the target is each read at 0.8x the floor's requests/s or better. CLINICS
clinics' tokens take turns; CONNECTIONS client threads each send a request when the last one
comes back (a closed loop). The endpoints are measured in ROUNDS interleaved rounds so a noisy
moment on the machine hits them all alike. Also reported: the statements each read sends to
Postgres, counted in-process (BEGIN and COMMIT included).
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

BENCH_DB = "voxanne_bench_api"
WORKERS = 2
CONNECTIONS = 8
CLINICS = 20
REQUESTS = 2000
ROUNDS = 4
FLOOR = "/api/bench/floor"
READS = ["/api/onboarding/status", "/api/billing/wallet"]


def drive(base: str, path: str, tokens: list[str], requests: int) -> tuple[float, list[float]]:
    """`requests` GETs of `path`, CONNECTIONS at a time; returns (elapsed, latencies)."""
    import httpx

    latencies: list[float] = []
    failures: list[str] = []
    left = iter(range(requests))
    lock = threading.Lock()
    start = threading.Barrier(CONNECTIONS + 1)

    def connection(n: int) -> None:
        with httpx.Client(base_url=base, timeout=60) as http:
            start.wait()
            while True:
                with lock:
                    i = next(left, None)
                if i is None:
                    return
                token = tokens[(i + n) % len(tokens)]
                began = time.perf_counter()
                response = http.get(path, headers={"Authorization": f"Bearer {token}"})
                took = time.perf_counter() - began
                with lock:
                    latencies.append(took)
                    if response.status_code != 200:
                        failures.append(f"{path} {response.status_code} {response.text[:200]}")

    threads = [threading.Thread(target=connection, args=(n,)) for n in range(CONNECTIONS)]
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


def statements_per_request(path: str, token: str) -> int:
    """Statements one request sends (the second on a warm connection), as production runs it."""
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext, override_settings

    client = Client(HTTP_HOST="127.0.0.1")
    with override_settings(ROOT_URLCONF="bench.floor.urls"):
        client.get(path, HTTP_AUTHORIZATION=f"Bearer {token}")
        with CaptureQueriesContext(connection) as captured:
            response = client.get(path, HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code == 200, response.content
    return len(captured.captured_queries)


def main() -> int:
    import logging

    with bench_database(BENCH_DB):
        django_setup()
        logging.getLogger("voxanne.access").setLevel(logging.WARNING)  # the in-process counts
        from voxanne import services
        from voxanne.auth import tokens_for
        from voxanne.tenancy import system_context

        with system_context("bench set-up"):
            tokens = [
                tokens_for(
                    services.sign_up(
                        email=f"api{i}@clinic.test",
                        password="bench-password-1234",
                        clinic_name=f"Api Clinic {i}",
                    ).user
                )["access"]
                for i in range(CLINICS)
            ]
        statements = {path: statements_per_request(path, tokens[0]) for path in [FLOOR, *READS]}
        elapsed = {path: 0.0 for path in [FLOOR, *READS]}
        latencies: dict[str, list[float]] = {path: [] for path in elapsed}
        per_round = REQUESTS // ROUNDS
        env = {**os.environ, "JWT_ACCESS_MINUTES": "60"}
        with gunicorn(env, workers=WORKERS, app="bench.floor.wsgi:application") as server:
            for path in elapsed:  # warm-up: imports, connections, caches
                drive(server.url, path, tokens, 200)
            for _ in range(ROUNDS):
                for path in elapsed:
                    took, samples = drive(server.url, path, tokens, per_round)
                    elapsed[path] += took
                    latencies[path] += samples

    floor_rps = len(latencies[FLOOR]) / elapsed[FLOOR]
    label = f"req/s {FLOOR}, same server"
    rows = [
        Row(
            figure=f"api: GET {FLOOR} requests/s ({WORKERS} workers, {CONNECTIONS} connections)",
            value=floor_rps,
            unit="req/s",
        )
    ]
    for path in READS:
        rows.append(
            Row(
                figure=f"api: GET {path} requests/s",
                value=len(latencies[path]) / elapsed[path],
                unit="req/s",
                baseline=floor_rps,
                baseline_label=label,
            )
        )
    for path in READS:
        rows.append(
            Row(
                figure=f"api: GET {path} p50",
                value=percentile(latencies[path], 50),
                unit="ms",
                baseline=percentile(latencies[FLOOR], 50),
                baseline_label=f"ms {FLOOR}, same server",
            )
        )
    for path in READS:
        rows.append(
            Row(
                figure=f"api: GET {path} statements per request",
                value=statements[path],
                unit="queries",
                baseline=statements[FLOOR],
                baseline_label=f"queries {FLOOR}",
            )
        )
    report(
        f"bench/api.py ({REQUESTS} requests per endpoint in {ROUNDS} interleaved rounds; "
        f"target: each read >= 0.8x the floor's requests/s)",
        rows,
    )
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1:
        REQUESTS = int(sys.argv[1])
    sys.exit(main())
