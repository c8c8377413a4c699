"""Two walls between clinics: scoped queries (404 for not-yours) and Postgres RLS."""

from __future__ import annotations

import re
import uuid

import pytest
from django.db import DatabaseError, connection, transaction

from tests.factories import auth_header, make_agent, make_call, make_org
from voice.models import Call
from voxanne.tenancy import deny_context, org_context

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("kind,maker", [("calls", make_call), ("agents", make_agent)])
def test_detail_is_the_same_404_for_missing_malformed_and_other_orgs(api, kind, maker):
    mine, theirs = make_org("Mine"), make_org("Theirs")
    own_row, other_row = maker(mine), maker(theirs)
    assert api.get(f"/api/{kind}/{own_row.id}", **auth_header(mine)).status_code == 200
    answers = [
        api.get(f"/api/{kind}/{ident}", **auth_header(mine))
        for ident in (other_row.id, uuid.uuid4(), "not-a-uuid", "1%20OR%201=1")
    ]
    assert {r.status_code for r in answers} == {404}
    assert {r.content for r in answers} == {answers[0].content}
    assert answers[0].json()["error"] == "Not found"


@pytest.mark.parametrize("kind,maker", [("calls", make_call), ("agents", make_agent)])
def test_lists_show_only_the_tokens_org_and_ignore_org_in_query(api, kind, maker):
    mine, theirs = make_org("Mine"), make_org("Theirs")
    own_ids = {str(maker(mine).id) for _ in range(2)}
    maker(theirs)
    response = api.get(
        f"/api/{kind}?org_id={theirs.id}", **auth_header(mine), HTTP_X_ORG_ID=str(theirs.id)
    )
    assert response.status_code == 200
    body = response.json()
    assert {row["id"] for row in body[kind]} == own_ids
    assert body["pagination"] == {"page": 1, "limit": 50, "total": 2, "total_pages": 1}


@pytest.mark.parametrize(
    "query", ["page=0", "limit=101", "limit=abc", "page=-1", "page=6230147503795184074752"]
)
def test_bad_paging_is_400(api, query):
    org = make_org()
    response = api.get(f"/api/calls?{query}", **auth_header(org))
    assert response.status_code == 400
    assert "error" in response.json()


@pytest.mark.urls("tests.core.urls")
def test_unscoped_orm_query_inside_a_request_sees_only_the_requests_org(api):
    org_a, org_b = make_org("A"), make_org("B")
    a_call = make_call(org_a)
    make_call(org_b)
    make_call(org_b)
    assert Call.objects.count() == 3  # the test itself runs in the system context
    response = api.get("/api/test-probes/unscoped-calls", **auth_header(org_a))
    assert response.json() == {"count": 1, "ids": [str(a_call.id)]}


def test_rls_denies_everything_when_no_org_is_set():
    make_call(make_org())
    with deny_context():
        assert Call.objects.count() == 0
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM voxanne_call")
            assert cursor.fetchone()[0] == 0


def test_a_prepared_statement_run_for_one_org_then_another_sees_each_ones_rows():
    """Statements are prepared on the server (settings.DATABASES) and, after a few runs,
    executed with one generic plan: the policy must still read the org at each execution."""
    org_a, org_b = make_org("A"), make_org("B")
    make_call(org_a)
    make_call(org_b)
    make_call(org_b)
    sql = "SELECT count(*) FROM voxanne_call WHERE duration_seconds >= %s"
    for _ in range(8):
        for org, expected in ((org_a, 1), (org_b, 2)):
            with org_context(org.id), connection.cursor() as cursor:
                cursor.execute(sql, [0])
                assert cursor.fetchone()[0] == expected
                assert Call.objects.filter(duration_seconds__gte=0).count() == expected
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT generic_plans FROM pg_prepared_statements WHERE statement = %s",
            [sql.replace("%s", "$1")],
        )
        assert cursor.fetchone()[0] > 0  # the loop did run the generic plan


def test_rls_refuses_writing_a_row_for_another_org():
    org_a, org_b = make_org("A"), make_org("B")
    with org_context(org_a.id), pytest.raises(DatabaseError), transaction.atomic():
        make_call(org_b)


def test_every_tenant_table_has_forced_rls_with_a_policy():
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT c.relname, c.relrowsecurity, c.relforcerowsecurity,
                   EXISTS (SELECT 1 FROM pg_policy p WHERE p.polrelid = c.oid)
            FROM pg_class c
            JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'org_id' AND NOT a.attisdropped
            JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = current_schema()
            WHERE c.relkind = 'r'
            """
        )
        tables = cursor.fetchall()
    assert tables, "no tenant-owned tables found"
    unprotected = [
        name for name, enabled, forced, policy in tables if not (enabled and forced and policy)
    ]
    assert unprotected == []


def test_application_role_is_not_exempt_from_rls():
    with connection.cursor() as cursor:
        cursor.execute("SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user")
        assert cursor.fetchone() == (False, False)


def test_the_api_never_lists_users(api):
    """The users table is outside RLS (tenancy.py says why), so this wall is the API itself:
    no route names users, and no GET answer, on any route, shows another clinic's staff."""
    from voxanne.models import User

    mine, theirs = make_org("Mine"), make_org("Theirs")
    colleague = User.objects.create_user(
        "colleague@theirs.test", "x-long-password-1", organization=theirs
    )
    secrets = {str(theirs.owner_id), colleague.email, str(colleague.id)}
    secrets.add(User.objects.get(pk=theirs.owner_id).email)
    schema = api.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    assert not [p for p in schema["paths"] if "user" in p.lower()]
    gets = [p for p, ops in schema["paths"].items() if "get" in ops and p != "/api/schema/"]
    assert len(gets) >= 5
    for path in gets:
        for ident in (str(theirs.owner_id), str(colleague.id)):
            url = re.sub(r"\{[^}]+\}", ident, path)
            body = api.get(url, **auth_header(mine)).content.decode()
            assert not [s for s in secrets if s in body], url
