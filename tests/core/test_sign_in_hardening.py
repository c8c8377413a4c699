"""Sign-in under attack: throttles that headers cannot dodge, tokens that die with a password,
and token edge cases that must be a 401, never a 500."""

from __future__ import annotations

import jwt
import pytest
from django.conf import settings
from django.core.cache import cache
from rest_framework_simplejwt.tokens import AccessToken, RefreshToken

from tests.factories import PASSWORD, make_org, owner_of, unique_email
from voxanne.auth import tokens_for

pytestmark = pytest.mark.django_db


ADDRESSES = ["127.0.0.1", "203.0.113.7", "203.0.113.8", *(f"192.0.2.{i}" for i in range(100))]


@pytest.fixture
def fresh_throttles():
    """Forget the address counts these tests use (emails are unique per test) before and after."""
    keys = [f"throttle_auth_{address}" for address in ADDRESSES]
    cache.delete_many(keys)
    yield
    cache.delete_many(keys)


def sign_in(api, email: str, password: str = "wrong-password", **extra):
    return api.post(
        "/api/auth/token", {"email": email, "password": password}, format="json", **extra
    )


def test_rotating_x_forwarded_for_does_not_escape_the_address_limit(api, settings, fresh_throttles):
    settings.AUTH_THROTTLE_RATE = "3/minute"
    statuses = [
        sign_in(api, unique_email(), HTTP_X_FORWARDED_FOR=f"198.51.100.{i}").status_code
        for i in range(4)
    ]
    assert statuses == [401, 401, 401, 429]


def test_behind_one_trusted_proxy_the_address_the_proxy_saw_is_limited(
    api, settings, fresh_throttles
):
    settings.AUTH_THROTTLE_RATE = "3/minute"
    settings.TRUSTED_PROXY_COUNT = 1
    # The client may write anything before the entry our proxy appends: only that entry counts.
    statuses = [
        sign_in(api, unique_email(), HTTP_X_FORWARDED_FOR=f"10.0.0.{i}, 203.0.113.7").status_code
        for i in range(4)
    ]
    assert statuses == [401, 401, 401, 429]
    # Another client behind the same proxy has its own count.
    assert sign_in(api, unique_email(), HTTP_X_FORWARDED_FOR="203.0.113.8").status_code == 401


def test_one_email_has_its_own_limit_whatever_the_address(api, settings, fresh_throttles):
    settings.AUTH_EMAIL_THROTTLE_RATE = "3/minute"
    email = owner_of(make_org()).email
    statuses = [
        sign_in(api, email.upper() if i % 2 else email, REMOTE_ADDR=f"192.0.2.{i}").status_code
        for i in range(4)
    ]
    assert statuses == [401, 401, 401, 429]
    # The right password does not get through either while the email is limited...
    assert sign_in(api, email, PASSWORD, REMOTE_ADDR="192.0.2.99").status_code == 429
    # ...and other clinics still sign in.
    other = owner_of(make_org("Other")).email
    assert sign_in(api, other, PASSWORD, REMOTE_ADDR="192.0.2.1").status_code == 200


# --- 500s that must be 401s --------------------------------------------------------------


def _forge(payload: dict) -> str:
    return jwt.encode(payload, settings.SECRET_KEY, algorithm="HS256")


def test_refresh_token_of_a_deleted_user_is_a_401(api):
    org = make_org()
    refresh = tokens_for(owner_of(org))["refresh"]
    user = owner_of(org)
    user.delete()
    response = api.post("/api/auth/token/refresh", {"refresh": refresh}, format="json")
    assert response.status_code == 401
    assert "error" in response.json()


@pytest.mark.parametrize("exp", [10**20, 2**63, 1e300, -(10**20)])
def test_a_validly_signed_token_with_an_absurd_exp_is_a_401(api, exp):
    org = make_org()
    pair = tokens_for(owner_of(org))
    access = _forge({**AccessToken(pair["access"]).payload, "exp": exp})
    response = api.get("/api/calls", HTTP_AUTHORIZATION=f"Bearer {access}")
    assert response.status_code == 401
    assert response.json() == {"error": "Invalid token"}
    refresh = _forge({**RefreshToken(pair["refresh"]).payload, "exp": exp})
    response = api.post("/api/auth/token/refresh", {"refresh": refresh}, format="json")
    assert response.status_code == 401


# --- Email case ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "typed", ["Foo.Bar@Example.com", "FOO.BAR@EXAMPLE.COM", " foo.bar@example.com "]
)
def test_sign_in_matches_the_email_in_any_case(api, typed):
    signup = api.post(
        "/api/auth/signup",
        {"email": "Foo.Bar@Example.com", "password": PASSWORD},
        format="json",
    )
    assert signup.status_code == 201
    response = sign_in(api, typed, PASSWORD)
    assert response.status_code == 200, response.content
    assert AccessToken(response.json()["access"])["user_id"] == signup.json()["user_id"]


def test_admin_sign_in_matches_the_email_in_any_case(client):
    from voxanne.models import User

    User.objects.create_superuser(email="Support.Lead@Voxanne.test", password=PASSWORD)
    response = client.post(
        "/admin/login/", {"username": "SUPPORT.LEAD@voxanne.TEST", "password": PASSWORD}
    )
    assert response.status_code == 302, response.content


# --- Tokens die with the password ----------------------------------------------------------


def calls_status(api, access: str) -> int:
    return api.get("/api/calls", HTTP_AUTHORIZATION=f"Bearer {access}").status_code


def refresh_status(api, refresh: str) -> int:
    return api.post("/api/auth/token/refresh", {"refresh": refresh}, format="json").status_code


def test_a_password_change_revokes_the_tokens_issued_before_it(api):
    org = make_org()
    old = tokens_for(owner_of(org))
    user = owner_of(org)
    user.set_password("a-brand-new-password-9")
    user.save()
    assert calls_status(api, old["access"]) == 401
    assert refresh_status(api, old["refresh"]) == 401
    fresh = sign_in(api, user.email, "a-brand-new-password-9")
    assert fresh.status_code == 200
    assert calls_status(api, fresh.json()["access"]) == 200


def test_support_setting_a_password_in_admin_revokes_the_clinics_tokens(api, client):
    from tests.factories import make_support_user

    org = make_org()
    old = tokens_for(owner_of(org))
    client.force_login(make_support_user(superuser=True))
    response = client.post(
        f"/admin/voxanne/user/{org.owner_id}/password/",
        {"password1": "support-set-this-one-7", "password2": "support-set-this-one-7"},
    )
    assert response.status_code == 302, response.content
    assert calls_status(api, old["access"]) == 401
    assert refresh_status(api, old["refresh"]) == 401


def test_a_refresh_token_works_once_and_its_successor_carries_on(api):
    org = make_org()
    first = tokens_for(owner_of(org))["refresh"]
    answer = api.post("/api/auth/token/refresh", {"refresh": first}, format="json")
    assert answer.status_code == 200
    second = answer.json()["refresh"]
    assert second != first
    assert refresh_status(api, first) == 401
    assert calls_status(api, answer.json()["access"]) == 200
    assert refresh_status(api, second) == 200


# --- Token responses are never cached ------------------------------------------------------


def test_every_token_response_says_no_store(api):
    email = unique_email()
    signup = api.post("/api/auth/signup", {"email": email, "password": PASSWORD}, format="json")
    login = sign_in(api, email, PASSWORD)
    refresh = api.post(
        "/api/auth/token/refresh", {"refresh": login.json()["refresh"]}, format="json"
    )
    for response in (signup, login, refresh):
        assert response.status_code in (200, 201)
        assert "no-store" in response["Cache-Control"]
