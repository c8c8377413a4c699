"""GET /api/onboarding/status: the token's org's state, and a graceful default on failure."""

from __future__ import annotations

import logging
import time
from contextlib import ExitStack

import pytest
from django.db import connection
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from tests.factories import auth_header, make_org
from tests.onboarding.conftest import table_locked
from voxanne.models import Organization

URL = "/api/onboarding/status"

pytestmark = pytest.mark.django_db


def test_status_without_token_is_401(api):
    response = api.get(URL)
    assert response.status_code == 401
    assert response.json() == {"error": "Unauthorized"}


def test_status_with_a_bad_token_is_401(api):
    response = api.get(URL, HTTP_AUTHORIZATION="Bearer not-a-token")
    assert response.status_code == 401


def test_new_clinic_needs_onboarding_and_sees_its_signup_clinic_name(api):
    org = make_org("Smile Dental")
    response = api.get(URL, **auth_header(org))
    assert response.status_code == 200
    assert response.json() == {
        "needs_onboarding": True,
        "completed_at": None,
        "clinic_name": "Smile Dental",
        "specialty": None,
    }


def test_signup_clinic_name_prefills_the_status_so_the_wizard_can_skip_that_step(api):
    signup = api.post(
        "/api/auth/signup",
        {"email": "new@clinic.test", "password": "correct-horse-9", "clinic_name": " Bright "},
        format="json",
    )
    assert signup.status_code == 201
    token = signup.json()["access"]
    body = api.get(URL, HTTP_AUTHORIZATION=f"Bearer {token}").json()
    assert (body["needs_onboarding"], body["clinic_name"]) == (True, "Bright")


def test_clinic_without_a_name_gets_null_clinic_name(api):
    org = make_org(clinic_name=None)
    assert api.get(URL, **auth_header(org)).json()["clinic_name"] is None


def test_completed_clinic_does_not_need_onboarding_and_gets_the_iso_completion_time(api):
    org = make_org("Smile Dental")
    completed_at = timezone.now().replace(microsecond=123456)
    Organization.objects.filter(pk=org.pk).update(
        onboarding_completed_at=completed_at, specialty="Dentistry"
    )
    body = api.get(URL, **auth_header(org)).json()
    assert body["needs_onboarding"] is False
    assert parse_datetime(body["completed_at"]) == completed_at
    assert (body["clinic_name"], body["specialty"]) == ("Smile Dental", "Dentistry")


def test_status_is_the_tokens_org_whatever_the_query_or_headers_say(api):
    mine, theirs = make_org("Mine"), make_org("Theirs")
    Organization.objects.filter(pk=theirs.pk).update(
        onboarding_completed_at=timezone.now(), specialty="Cardiology"
    )
    response = api.get(
        f"{URL}?org_id={theirs.id}", **auth_header(mine), HTTP_X_ORG_ID=str(theirs.id)
    )
    assert response.json() == {
        "needs_onboarding": True,
        "completed_at": None,
        "clinic_name": "Mine",
        "specialty": None,
    }
    assert api.get(URL, **auth_header(theirs)).json()["specialty"] == "Cardiology"


def is_status_read(sql: str) -> bool:
    """The status's own read of the org (authentication reads it joined to the user)."""
    return 'FROM "voxanne_organization"' in sql and "voxanne_user" not in sql


@pytest.mark.django_db(transaction=True)
def test_status_answers_the_graceful_default_when_the_org_read_fails(api, caplog):
    """Right before the status reads the org row, another connection locks the table: the read
    hits its time limit in Postgres for real, and the clinic still gets to the dashboard."""
    org = make_org("Smile Dental")
    locks, status_reads = ExitStack(), []

    def lock_before_status_read(execute, sql, params, many, context):
        if is_status_read(sql) and not status_reads:
            status_reads.append(sql)
            locks.enter_context(table_locked("voxanne_organization"))
        return execute(sql, params, many, context)

    with (
        locks,
        connection.execute_wrapper(lock_before_status_read),
        caplog.at_level(logging.ERROR, logger="onboarding.services"),
    ):
        started = time.monotonic()
        response = api.get(URL, **auth_header(org))
        elapsed = time.monotonic() - started
        assert status_reads, "the status read was not seen"
    assert response.status_code == 200
    assert response.json() == {
        "needs_onboarding": False,
        "completed_at": None,
        "clinic_name": None,
        "specialty": None,
    }
    assert elapsed < 3, elapsed
    [record] = [r for r in caplog.records if r.name == "onboarding.services"]
    assert record.getMessage() == "onboarding status unreadable, answering the default"
    assert record.org_id == str(org.id)
    # Nothing stuck: the next request reads the real state.
    assert api.get(URL, **auth_header(org)).json()["needs_onboarding"] is True
