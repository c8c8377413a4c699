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
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.harness import (  # noqa: E402
    bench_database,
    closed_loop,
    django_setup,
    gunicorn,
    percentile,
    sign_up_clinics,
)
from bench.table import Row, report  # noqa: E402

BENCH_DB = "voxanne_bench_api"
WORKERS = 2
CONNECTIONS = 8
CLINICS = 20
REQUESTS = 2000
ROUNDS = 10
FLOOR = "/api/bench/floor"
READS = ["/api/onboarding/status", "/api/billing/wallet"]


def drive(base: str, path: str, tokens: list[str], requests: int) -> tuple[float, list[float]]:
    """`requests` GETs of `path`, the tokens taking turns, CONNECTIONS at a time; returns
    (elapsed, latencies)."""
    gets = [
        ("GET", path, {"headers": {"Authorization": f"Bearer {tokens[i % len(tokens)]}"}})
        for i in range(requests)
    ]
    return closed_loop(base, gets, clients=CONNECTIONS)


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
        from voxanne.auth import tokens_for
        from voxanne.tenancy import system_context

        with system_context("bench set-up"):
            tokens = [
                tokens_for(signed.user)["access"]
                for signed in sign_up_clinics(CLINICS, prefix="api")
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
