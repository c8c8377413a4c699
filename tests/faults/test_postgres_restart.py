"""Postgres restarted (pg_ctl restart -m fast) while gunicorn serves clinics signing up.

A real server of this test's own (the embedded `pgserver` binaries), migrated, with gunicorn in
front and a stream of signups and status reads. Requests caught by the restart answer a clean
503 {"error": ...}; the service reconnects by itself; no signup is half-written (every clinic
has its owner and its wallet, every 201 names a clinic that exists).
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx
import pgserver
import psycopg
import pytest
from django.conf import settings

from bench.harness import gunicorn

APP_ROLE = "voxanne_restart"
# pgserver logs each step at INFO, the last one from an exit hook after pytest closed the
# stream the log handler writes to ("--- Logging error ---" under a green run).
logging.getLogger("pgserver").setLevel(logging.WARNING)


@pytest.fixture
def own_postgres(tmp_path):
    """A Postgres of this test's own; yields (server, application URL)."""
    server = pgserver.get_server(tmp_path / "pg", cleanup_mode="stop")
    with psycopg.connect(server.get_uri(), autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {APP_ROLE} LOGIN NOSUPERUSER NOBYPASSRLS")
        conn.execute(f"CREATE DATABASE {APP_ROLE} OWNER {APP_ROLE}")
    parts = urlsplit(server.get_uri())  # postgresql://postgres:@/postgres?host=<socket dir>
    url = urlunsplit(
        (parts.scheme, f"{APP_ROLE}@{parts.hostname or ''}", f"/{APP_ROLE}", parts.query, "")
    )
    try:
        yield server, url
    finally:
        # The restarted postmaster is not the one pgserver started: stop it by its data dir.
        pgserver.pg_ctl(
            ["-w", "-m", "immediate", "stop"],
            pgdata=server.pgdata,
            user=server.system_user,
            timeout=60,
        )
        server.cleanup()


def restart(server) -> None:
    pgserver.pg_ctl(
        ["-w", "-m", "fast", "restart"], pgdata=server.pgdata, user=server.system_user, timeout=60
    )


def test_requests_caught_by_a_restart_get_503_the_service_recovers_nothing_half_written(
    own_postgres,
):
    server, url = own_postgres
    env = {**os.environ, "DATABASE_URL": url, "AUTH_THROTTLE_RATE": "100000/second"}
    env.pop("TEST_DATABASE_NAME", None)
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--no-input", "-v", "0"],
        cwd=Path(settings.BASE_DIR),
        env=env,
        check=True,
        timeout=300,
    )
    answers: list[tuple[str, int, dict]] = []
    stop = threading.Event()

    with gunicorn(env, workers=2) as web:

        def clinic(index: int) -> None:
            with httpx.Client(base_url=web.url, timeout=30) as http:
                n = 0
                while not stop.is_set():
                    n += 1
                    try:
                        r = http.post(
                            "/api/auth/signup",
                            json={
                                "email": f"restart-{index}-{n}@clinic.test",
                                "password": "restart-test-password-1234",
                                "clinic_name": f"Restart {index}-{n}",
                            },
                        )
                        answers.append(("signup", r.status_code, r.json()))
                        if r.status_code == 201:
                            token = r.json()["access"]
                            s = http.get(
                                "/api/onboarding/status",
                                headers={"Authorization": f"Bearer {token}"},
                            )
                            answers.append(("status", s.status_code, s.json()))
                    except httpx.TransportError as exc:  # the server itself must not drop us
                        answers.append(("transport", 0, {"error": repr(exc)}))

        clients = [threading.Thread(target=clinic, args=(i,)) for i in range(4)]
        for thread in clients:
            thread.start()
        deadline = time.monotonic() + 60  # a loaded machine hashes the first passwords slowly
        while len(answers) < 4 and time.monotonic() < deadline:
            time.sleep(0.2)
        before = len(answers)
        restart(server)
        restarted_at = len(answers)
        time.sleep(4)
        stop.set()
        for thread in clients:
            thread.join(60)

    assert before > 0 and len(answers) > restarted_at + 4, "no traffic around the restart"
    unexpected = [a for a in answers if a[1] not in (200, 201, 503)]
    assert unexpected == []
    failures = [body for _, status, body in answers if status == 503]
    assert failures, "the restart caught no request in flight"
    assert all(set(b) <= {"error", "code"} and isinstance(b["error"], str) for b in failures)
    tail = answers[-4:]  # the last answers of each client: the service is back
    assert all(status in (200, 201) for _, status, _ in tail), tail

    created = {body["org_id"] for kind, status, body in answers if status == 201}
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SELECT set_config('app.system', 'on', false)")
        orgs = {str(r[0]) for r in conn.execute("SELECT id FROM voxanne_organization")}
        half_written = conn.execute(
            "SELECT count(*) FROM voxanne_organization o"
            " WHERE o.owner_id IS NULL"
            " OR NOT EXISTS (SELECT 1 FROM billing_wallet w WHERE w.org_id = o.id)"
        ).fetchone()[0]
    assert created <= orgs
    assert half_written == 0
