"""Support's user admin: forms that explain themselves, and no way up for staff who are not
superusers."""

from __future__ import annotations

import pytest

from tests.factories import PASSWORD, make_org, make_support_user, unique_email
from voxanne.models import User

pytestmark = pytest.mark.django_db

ADD = "/admin/voxanne/user/add/"


@pytest.fixture
def superuser_client(client):
    client.force_login(make_support_user(superuser=True))
    return client


def test_adding_a_clinic_user_without_an_organization_is_a_form_error(superuser_client):
    email = unique_email("new")
    response = superuser_client.post(
        ADD, {"email": email, "password1": PASSWORD, "password2": PASSWORD}
    )
    assert response.status_code == 200
    assert "organization" in response.context["adminform"].form.errors
    assert not User.objects.filter(email=email).exists()


def test_adding_a_clinic_user_with_an_organization_works(superuser_client):
    org = make_org()
    email = unique_email("new")
    response = superuser_client.post(
        ADD,
        {"email": email, "organization": org.pk, "password1": PASSWORD, "password2": PASSWORD},
    )
    assert response.status_code == 302, response.content
    assert User.objects.get(email=email).organization_id == org.pk


def test_an_email_added_in_admin_is_stored_lowercased(superuser_client):
    org = make_org()
    response = superuser_client.post(
        ADD,
        {
            "email": "New.Person@Clinic.TEST",
            "organization": org.pk,
            "password1": PASSWORD,
            "password2": PASSWORD,
        },
    )
    assert response.status_code == 302, response.content
    assert User.objects.filter(email="new.person@clinic.test").exists()
