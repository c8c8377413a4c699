"""POST /api/onboarding/complete: once, with cleaned names, and a plain 500 on failure."""

from __future__ import annotations

import logging

import pytest
from django.utils.dateparse import parse_datetime

from tests.factories import auth_header, make_org
from tests.onboarding.conftest import statements_fail_on
from voxanne.models import Organization

URL = "/api/onboarding/complete"
STATUS_URL = "/api/onboarding/status"

pytestmark = pytest.mark.django_db


def fresh(org: Organization) -> Organization:
    return Organization.objects.get(pk=org.pk)


def test_complete_without_token_is_401_and_changes_nothing(post_json, org):
    response = post_json(URL, {"clinic_name": "Hijack"})
    assert response.status_code == 401
    assert response.json() == {"error": "Unauthorized"}
    assert (fresh(org).clinic_name, fresh(org).onboarding_completed_at) == ("Smile Dental", None)


def test_complete_sets_completed_at_and_persists_clinic_name_and_specialty(post_json, org, api):
    assert api.get(STATUS_URL, **auth_header(org)).json()["needs_onboarding"] is True
    response = post_json(URL, {"clinic_name": "Bright Smiles", "specialty": "Dentistry"}, org)
    assert response.status_code == 200
    assert response.json() == {"success": True}
    stored = fresh(org)
    assert stored.onboarding_completed_at is not None
    assert (stored.clinic_name, stored.specialty) == ("Bright Smiles", "Dentistry")
    status = api.get(STATUS_URL, **auth_header(org)).json()
    assert status == {
        "needs_onboarding": False,
        "completed_at": status["completed_at"],
        "clinic_name": "Bright Smiles",
        "specialty": "Dentistry",
    }
    assert parse_datetime(status["completed_at"]) == stored.onboarding_completed_at


def test_complete_strips_and_cuts_clinic_name_to_200_and_specialty_to_100(post_json, org):
    body = {"clinic_name": "  " + "C" * 250 + "  ", "specialty": "\t" + "s" * 150 + "\n"}
    assert post_json(URL, body, org).status_code == 200
    org = fresh(org)
    assert org.clinic_name == "C" * 200
    assert org.specialty == "s" * 100


def test_complete_keeps_names_at_the_limit_and_strips_surrounding_spaces(post_json, org):
    body = {"clinic_name": " Smile & Co — Ørthodontics ", "specialty": " " + "é" * 100}
    assert post_json(URL, body, org).status_code == 200
    org = fresh(org)
    assert (org.clinic_name, org.specialty) == ("Smile & Co — Ørthodontics", "é" * 100)


def test_complete_without_fields_only_sets_the_timestamp(post_json, org):
    assert post_json(URL, {}, org).status_code == 200
    org = fresh(org)
    assert org.onboarding_completed_at is not None
    assert (org.clinic_name, org.specialty) == ("Smile Dental", None)


def test_blank_fields_leave_the_stored_values_as_they_are(post_json, org):
    Organization.objects.filter(pk=org.pk).update(specialty="Dentistry")
    assert post_json(URL, {"clinic_name": "   ", "specialty": ""}, org).status_code == 200
    assert (fresh(org).clinic_name, fresh(org).specialty) == ("Smile Dental", "Dentistry")


@pytest.mark.parametrize("field", ["clinic_name", "specialty"])
@pytest.mark.parametrize("value", [123, 1.5, True, None, ["Smile"], {"name": "Smile"}])
def test_a_non_string_field_is_400_and_changes_nothing(post_json, org, field, value):
    assert_refused_without_change(post_json, org, field, value)


@pytest.mark.parametrize("field", ["clinic_name", "specialty"])
@pytest.mark.parametrize("value", ["Smile\x00", "\ud800 Smile"])
def test_a_string_that_cannot_be_stored_is_400_not_500(post_json, org, field, value):
    assert_refused_without_change(post_json, org, field, value)


def assert_refused_without_change(post_json, org, field, value):
    response = post_json(URL, {field: value}, org)
    assert response.status_code == 400
    assert response.json()["error"] == f"Please enter a valid {field.replace('_', ' ')}."
    assert field in response.json()["fields"]
    org = fresh(org)
    assert (org.onboarding_completed_at, org.clinic_name, org.specialty) == (
        None,
        "Smile Dental",
        None,
    )


@pytest.mark.parametrize("payload", ["[]", '"done"', "{oops"])
def test_a_body_that_is_not_a_json_object_is_400(post_json, org, payload):
    assert post_json(URL, payload, org).status_code == 400
    assert fresh(org).onboarding_completed_at is None


def test_completing_again_succeeds_keeps_the_first_time_and_updates_the_names(post_json, org):
    assert post_json(URL, {"clinic_name": "First Name"}, org).status_code == 200
    first = fresh(org).onboarding_completed_at
    response = post_json(URL, {"clinic_name": "Second Name", "specialty": "Dentistry"}, org)
    assert response.status_code == 200
    assert response.json() == {"success": True}
    org = fresh(org)
    assert org.onboarding_completed_at == first
    assert (org.clinic_name, org.specialty) == ("Second Name", "Dentistry")


def test_complete_touches_only_the_tokens_org(post_json, org):
    other = make_org("Other Clinic")
    body = {"clinic_name": "Renamed", "org_id": str(other.id)}
    assert post_json(URL, body, org).status_code == 200
    other = fresh(other)
    assert (other.clinic_name, other.onboarding_completed_at) == ("Other Clinic", None)
    assert fresh(org).clinic_name == "Renamed"


def test_database_failure_is_a_plain_500_logged_and_changes_nothing(post_json, org, caplog):
    """A trigger makes the UPDATE of the organization fail for real."""
    with (
        statements_fail_on("voxanne_organization", "UPDATE"),
        caplog.at_level(logging.ERROR, logger="onboarding.services"),
    ):
        response = post_json(URL, {"clinic_name": "Bright Smiles"}, org)
    assert response.status_code == 500
    body = response.json()
    assert body["error"] == "Failed to complete onboarding"
    assert set(body) <= {"error", "code"}
    assert "injected" not in response.content.decode()
    [record] = [r for r in caplog.records if r.name == "onboarding.services"]
    assert record.getMessage() == "onboarding completion failed"
    assert "injected fault" in str(record.exc_info[1])
    org = fresh(org)
    assert (org.onboarding_completed_at, org.clinic_name) == (None, "Smile Dental")


def test_failure_of_the_name_update_rolls_back_the_completion_too(post_json, org):
    """The trigger fires only on a name change: the completion UPDATE runs first and succeeds,
    so only one transaction around both keeps the org unchanged."""
    with statements_fail_on("voxanne_organization", "UPDATE OF clinic_name"):
        assert post_json(URL, {"clinic_name": "Bright Smiles"}, org).status_code == 500
    assert fresh(org).onboarding_completed_at is None
