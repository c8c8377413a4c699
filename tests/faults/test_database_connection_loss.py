"""Postgres dropping its connections under traffic (what a restart does to a running app).

Requests whose query dies answer a clean 503 {"error": ...}; the next request reconnects by
itself. The server side is a real live server with its own connections; the test kills their
backends with pg_terminate_backend, as a restart would.
"""

from __future__ import annotations

import threading
import time

import httpx
import psycopg
import pytest

from tests.doubles.fixtures import test_database_url
from tests.factories import access_token, make_call, make_org

pytestmark = pytest.mark.django_db(transaction=True)


def _backend_waiting_on_a_lock(admin: psycopg.Connection, timeout: float = 10.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        row = admin.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
            " AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()"
        ).fetchone()
        if row:
            return row[0]
        time.sleep(0.05)
    raise AssertionError("the request never reached the database")


def test_request_in_flight_when_its_connection_dies_gets_a_clean_503_then_service_recovers(
    live_server,
):
    org = make_org("Restart Clinic")
    make_call(org)
    headers = {"Authorization": f"Bearer {access_token(org)}"}
    url = f"{live_server.url}/api/calls"
    assert httpx.get(url, headers=headers, timeout=10).status_code == 200

    answers: list[httpx.Response] = []
    with (
        psycopg.connect(test_database_url(), autocommit=True) as admin,
        psycopg.connect(test_database_url()) as locker,
    ):
        locker.execute("LOCK TABLE voxanne_call IN ACCESS EXCLUSIVE MODE")
        request = threading.Thread(
            target=lambda: answers.append(httpx.get(url, headers=headers, timeout=30))
        )
        request.start()
        victim = _backend_waiting_on_a_lock(admin)
        assert admin.execute("SELECT pg_terminate_backend(%s)", [victim]).fetchone()[0]
        request.join(timeout=30)
        locker.rollback()

    (answer,) = answers
    assert answer.status_code == 503
    assert answer.json() == {"error": "Service temporarily unavailable. Please try again."}
    assert answer.headers["X-Request-ID"]
    # The next requests reconnect on their own; nothing was half-written.
    for _ in range(3):
        again = httpx.get(url, headers=headers, timeout=10)
        assert again.status_code == 200
        assert again.json()["pagination"]["total"] == 1
