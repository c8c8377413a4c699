"""What an authenticated read costs in database round trips, counted as production runs it:
no test transaction around the request, and a thread whose state between requests is deny."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from tests.factories import auth_header, make_call, make_org
from voice.models import Call
from voxanne.tenancy import deny_context

pytestmark = pytest.mark.django_db(transaction=True)

# Every statement BEGIN/COMMIT included (Django logs those too). The connection health check
# Django runs at the first query of a request is not a statement here, and the same for all.
START = ["set_config('app.org_id', ''"]  # default deny, before anything else
AUTH = ['FROM "voxanne_user"', "set_config('app.org_id', '"]  # the token's user, then its org


def statements_of(api, path: str, headers: dict) -> list[str]:
    with deny_context():
        api.get(path, **headers)  # a warm connection, as a server thread has
        with CaptureQueriesContext(connection) as captured:
            response = api.get(path, **headers)
    assert response.status_code == 200, response.content
    return [q["sql"] for q in captured.captured_queries]


def assert_statements(statements: list[str], expected: list[str]) -> None:
    assert len(statements) == len(expected), "\n".join(statements)
    for sql, fragment in zip(statements, expected, strict=True):
        assert fragment in sql, f"{fragment!r} not in {sql!r}"


def test_an_authenticated_wallet_read_is_four_statements(api):
    org = make_org()
    statements = statements_of(api, "/api/billing/wallet", auth_header(org))
    # The wallet, read with the clinic's auto-recharge settings its answer reports (issue 17).
    assert_statements(statements, [*START, *AUTH, 'LEFT OUTER JOIN "billing_auto_recharge"'])


def test_the_onboarding_status_read_is_six_statements_and_still_time_limited(api):
    org = make_org()
    statements = statements_of(api, "/api/onboarding/status", auth_header(org))
    assert_statements(
        statements,
        [
            *START,
            *AUTH,
            "set_config('statement_timeout'",
            'FROM "voxanne_organization"',
            "set_config('statement_timeout'",
        ],
    )
    with connection.cursor() as cursor:  # the limit was the read's only, not the session's
        cursor.execute("SELECT current_setting('statement_timeout')")
        assert cursor.fetchone()[0] == "0"


def test_after_a_request_the_next_one_still_starts_with_nothing_visible(api):
    """The end of a request leaves its org on the connection (the next start resets it): code
    on that connection outside any request scope must still see nothing."""
    mine = make_org("Mine")
    make_call(mine)
    with deny_context():
        assert api.get("/api/calls", **auth_header(mine)).json()["pagination"]["total"] == 1
        unauthenticated = api.get("/api/calls")
        assert unauthenticated.status_code == 401
        with connection.cursor() as cursor:
            cursor.execute("SELECT current_setting('app.org_id', true)")
            assert cursor.fetchone()[0] == ""
    with deny_context():
        assert Call.objects.count() == 0
