"""Helpers for the onboarding API tests: JSON requests and real database faults."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from django.db import connection

from tests.factories import auth_header, make_org


@pytest.fixture
def org():
    return make_org("Smile Dental")


@pytest.fixture
def post_json(api):
    """POST a JSON body (any JSON value, or raw text) as the org's owner, or anonymously."""

    def post(path: str, body: object, org=None):
        payload = body if isinstance(body, str) else json.dumps(body)
        headers = auth_header(org) if org is not None else {}
        return api.generic("POST", path, payload, content_type="application/json", **headers)

    return post


@contextmanager
def statements_fail_on(table: str, operation: str) -> Iterator[None]:
    """A real database fault: a trigger that makes every `operation` on `table` raise."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            CREATE FUNCTION test_fault_raise() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN RAISE EXCEPTION 'injected fault on %', TG_TABLE_NAME; END $$
            """
        )
        cursor.execute(
            f'CREATE TRIGGER test_fault BEFORE {operation} ON "{table}" '
            "FOR EACH ROW EXECUTE FUNCTION test_fault_raise()"
        )
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f'DROP TRIGGER IF EXISTS test_fault ON "{table}"')
            cursor.execute("DROP FUNCTION IF EXISTS test_fault_raise()")


@contextmanager
def table_locked(table: str, *, at_most_seconds: float = 5) -> Iterator[None]:
    """A real database fault: another connection holds an ACCESS EXCLUSIVE lock on `table`
    until the block ends (or `at_most_seconds` pass, so code that waits forever fails the
    test's timing assertions instead of hanging the suite).

    Use from transaction=True tests (the test's own connection must hold no lock on it).
    """
    locked, release = threading.Event(), threading.Event()
    failure: list[BaseException] = []

    def hold() -> None:
        try:  # a thread's own Django connection: a second backend
            with connection.cursor() as cursor:
                cursor.execute("BEGIN")
                cursor.execute(f'LOCK TABLE "{table}" IN ACCESS EXCLUSIVE MODE NOWAIT')
                locked.set()
                release.wait(at_most_seconds)
                cursor.execute("ROLLBACK")
        except BaseException as exc:
            failure.append(exc)
            locked.set()
        finally:
            connection.close()

    holder = threading.Thread(target=hold, daemon=True)
    holder.start()
    locked.wait(10)
    if failure:
        raise failure[0]
    try:
        yield
    finally:
        release.set()
        holder.join(10)
