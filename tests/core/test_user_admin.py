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


# --- Only superusers hand out power -------------------------------------------------------


def change_user(client, user: User, **fields):
    data = {
        "email": user.email,
        "organization": user.organization_id or "",
        "is_active": "on",
        "is_staff": "on" if user.is_staff else "",
        **fields,
    }
    return client.post(
        f"/admin/voxanne/user/{user.pk}/change/", {k: v for k, v in data.items() if v != ""}
    )


@pytest.fixture
def user_manager(client):
    """Support staff who may view and change users, and nothing more."""
    manager = make_support_user(permissions=("voxanne.view_user", "voxanne.change_user"))
    client.force_login(manager)
    return manager


def test_staff_who_may_change_users_cannot_make_themselves_superuser(client, user_manager):
    from django.contrib.auth.models import Group, Permission

    refund = Permission.objects.get(codename="change_wallet")
    group = Group.objects.create(name="Refunds")
    group.permissions.add(refund)
    response = change_user(
        client,
        user_manager,
        is_superuser="on",
        groups=[group.pk],
        user_permissions=[refund.pk],
    )
    assert response.status_code in (200, 302)
    user_manager.refresh_from_db()
    assert not user_manager.is_superuser
    assert not user_manager.groups.exists()
    assert set(user_manager.user_permissions.values_list("codename", flat=True)) == {
        "view_user",
        "change_user",
    }
    page = client.get(f"/admin/voxanne/user/{user_manager.pk}/change/").content.decode()
    for field in ("is_superuser", "groups", "user_permissions"):
        assert f'name="{field}"' not in page


def test_staff_who_may_change_users_cannot_touch_a_superuser_or_other_staff(client, user_manager):
    for target in (make_support_user(superuser=True), make_support_user()):
        assert change_user(client, target, is_active="").status_code == 403
        response = client.post(
            f"/admin/voxanne/user/{target.pk}/password/",
            {"password1": "taken-over-password-1", "password2": "taken-over-password-1"},
        )
        assert response.status_code == 403
        target.refresh_from_db()
        assert target.is_active and not target.check_password("taken-over-password-1")


def test_staff_who_may_change_users_still_manage_clinic_users(client, user_manager):
    clinic_user = User.objects.get(pk=make_org().owner_id)
    response = change_user(client, clinic_user, is_active="")
    assert response.status_code == 302, response.content
    clinic_user.refresh_from_db()
    assert not clinic_user.is_active


def test_a_superuser_can_grant_superuser_status(superuser_client):
    staff = make_support_user()
    response = change_user(superuser_client, staff, is_superuser="on")
    assert response.status_code == 302, response.content
    staff.refresh_from_db()
    assert staff.is_superuser


# --- Admin sign-in lockout -----------------------------------------------------------------


def admin_login(client, email: str, password: str):
    return client.post("/admin/login/?next=/admin/", {"username": email, "password": password})


def test_admin_sign_in_locks_after_five_failures_even_with_the_right_password(client):
    staff = make_support_user(superuser=True)
    statuses = [admin_login(client, staff.email, "wrong-password").status_code for _ in range(5)]
    assert statuses == [200, 200, 200, 200, 429]
    locked = admin_login(client, staff.email.upper(), PASSWORD)
    assert locked.status_code == 429
    assert client.get("/admin/").status_code == 302  # not signed in


def test_admin_lockout_is_per_address_and_account(client):
    from django.test import Client

    staff = make_support_user(superuser=True)
    for _ in range(5):
        admin_login(client, staff.email, "wrong-password")
    elsewhere = Client(REMOTE_ADDR="198.51.100.20")
    assert admin_login(elsewhere, staff.email, PASSWORD).status_code == 302
    colleague = make_support_user(superuser=True)
    assert admin_login(client, colleague.email, PASSWORD).status_code == 302


def test_the_test_clients_login_still_works_with_the_lockout_installed(client):
    staff = make_support_user(superuser=True)
    assert client.login(email=staff.email, password=PASSWORD)
    assert client.get("/admin/").status_code == 200
