"""Production settings pass Django's deploy checks; admin is for logged-in staff, with CSRF."""

from __future__ import annotations

import base64
import os
import secrets
import subprocess
import sys

import pytest
from django.conf import settings
from django.test import Client

from tests.factories import PASSWORD, make_org, owner_of


def production_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        DJANGO_DEBUG="0",
        DJANGO_SECRET_KEY=secrets.token_urlsafe(50),
        FIELD_ENCRYPTION_KEY=base64.urlsafe_b64encode(secrets.token_bytes(32)).decode(),
        DJANGO_ALLOWED_HOSTS="app.voxanne.example",
        DJANGO_SSL_REDIRECT="1",
    )
    env.pop("DJANGO_SECURE_COOKIES", None)
    env.pop("DJANGO_HSTS_SECONDS", None)
    return env


def test_check_deploy_passes_with_production_settings():
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=settings.BASE_DIR,
        env=production_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_production_refuses_to_start_without_a_secret_key():
    env = production_env()
    del env["DJANGO_SECRET_KEY"]
    result = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=settings.BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY must be set" in result.stderr


@pytest.mark.django_db
def test_admin_needs_a_staff_login():
    anonymous = Client()
    response = anonymous.get("/admin/voxanne/organization/")
    assert response.status_code == 302 and "/admin/login/" in response["Location"]
    clinic_user = Client()
    assert clinic_user.login(email=owner_of(make_org()).email, password=PASSWORD)
    response = clinic_user.get("/admin/voxanne/organization/")
    assert response.status_code == 302 and "/admin/login/" in response["Location"]


@pytest.mark.django_db
def test_admin_forms_are_protected_by_csrf():
    from voxanne.models import User

    User.objects.create_superuser(email="support@voxanne.test", password=PASSWORD)
    browser = Client(enforce_csrf_checks=True)
    response = browser.post(
        "/admin/login/", {"username": "support@voxanne.test", "password": PASSWORD}
    )
    assert response.status_code == 403
    browser.get("/admin/login/")
    token = browser.cookies["csrftoken"].value
    response = browser.post(
        "/admin/login/",
        {"username": "support@voxanne.test", "password": PASSWORD, "csrfmiddlewaretoken": token},
    )
    assert response.status_code == 302
    org = make_org("Csrf Clinic")
    response = browser.post(f"/admin/voxanne/organization/{org.pk}/change/", {"clinic_name": "X"})
    assert response.status_code == 403
