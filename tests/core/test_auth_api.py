"""Signup, login, refresh, and every way a token can be wrong."""

from __future__ import annotations

from datetime import timedelta

import jwt
import pytest
from django.conf import settings
from django.utils import timezone
from rest_framework_simplejwt.tokens import AccessToken, RefreshToken

from tests.factories import PASSWORD, access_token, make_call, make_org, owner_of, unique_email
from voxanne.auth import tokens_for
from voxanne.models import Organization, User

pytestmark = pytest.mark.django_db


def get_calls(api, token: str | None):
    headers = {"HTTP_AUTHORIZATION": f"Bearer {token}"} if token is not None else {}
    return api.get("/api/calls", **headers)


def test_signup_creates_clinic_and_owner_and_returns_tokens(api):
    response = api.post(
        "/api/auth/signup",
        {"email": "Dr.Who@Clinic.test", "password": PASSWORD, "clinic_name": "  Tardis Dental  "},
        format="json",
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert set(body) == {"access", "refresh", "org_id", "user_id"}
    org = Organization.objects.get(pk=body["org_id"])
    user = User.objects.get(pk=body["user_id"])
    assert org.clinic_name == "Tardis Dental"
    assert org.owner_id == user.id and user.organization_id == org.id
    assert user.email == "dr.who@clinic.test"
    assert get_calls(api, body["access"]).status_code == 200


def test_signup_with_taken_email_is_refused_without_saying_why_exactly(api):
    org = make_org()
    response = api.post(
        "/api/auth/signup",
        {"email": owner_of(org).email.upper(), "password": PASSWORD},
        format="json",
    )
    assert response.status_code == 400
    assert response.json()["error"].startswith("An account cannot be created")
    assert Organization.objects.count() == 1


def test_signup_applies_password_validators(api):
    response = api.post(
        "/api/auth/signup", {"email": unique_email(), "password": "123"}, format="json"
    )
    assert response.status_code == 400
    assert "password" in response.json()["error"].lower()
    assert not User.objects.exists()


def test_signup_with_missing_fields_is_400(api):
    response = api.post("/api/auth/signup", {"password": PASSWORD}, format="json")
    assert response.status_code == 400
    assert response.json()["error"] == "Please provide the email."
    assert "email" in response.json()["fields"]


def test_login_and_refresh(api):
    org = make_org()
    email = owner_of(org).email
    login = api.post("/api/auth/token", {"email": email, "password": PASSWORD}, format="json")
    assert login.status_code == 200
    pair = login.json()
    assert AccessToken(pair["access"])["org_id"] == str(org.id)
    refreshed = api.post("/api/auth/token/refresh", {"refresh": pair["refresh"]}, format="json")
    assert refreshed.status_code == 200
    assert get_calls(api, refreshed.json()["access"]).status_code == 200


def test_login_with_bad_password_is_401(api):
    org = make_org()
    response = api.post(
        "/api/auth/token", {"email": owner_of(org).email, "password": "wrong"}, format="json"
    )
    assert response.status_code == 401
    assert response.json()["error"] == "Invalid email or password."


def test_support_staff_get_no_api_token(api):
    User.objects.create_superuser(email="support@voxanne.test", password=PASSWORD)
    response = api.post(
        "/api/auth/token", {"email": "support@voxanne.test", "password": PASSWORD}, format="json"
    )
    assert response.status_code == 401
    assert "access" not in response.json()


def test_missing_token_says_unauthorized(api):
    response = get_calls(api, None)
    assert response.status_code == 401
    assert response.json() == {"error": "Unauthorized"}


def _forge(payload: dict, key: str | None = None, algorithm: str = "HS256") -> str:
    return jwt.encode(payload, key if key is not None else settings.SECRET_KEY, algorithm=algorithm)


def _claims(org) -> dict:
    return dict(AccessToken(access_token(org)).payload)


@pytest.mark.parametrize(
    "mutate",
    [
        pytest.param(
            lambda c: _forge(c, key="not-our-secret-but-long-enough-for-hs256-0123"),
            id="wrong-signature",
        ),
        pytest.param(
            lambda c: _forge(
                {**c, "exp": int((timezone.now() - timedelta(minutes=1)).timestamp())}
            ),
            id="expired",
        ),
        pytest.param(
            lambda c: _forge({**c, "nbf": int((timezone.now() + timedelta(hours=1)).timestamp())}),
            id="not-yet-valid",
        ),
        pytest.param(lambda c: jwt.encode(c, None, algorithm="none"), id="alg-none"),
        pytest.param(
            lambda c: _forge({k: v for k, v in c.items() if k != "org_id"}), id="no-org-claim"
        ),
        pytest.param(lambda c: _forge({**c, "org_id": "not-a-uuid"}), id="garbage-org-claim"),
        pytest.param(lambda c: "abc.def.ghi", id="garbage"),
    ],
)
def test_bad_tokens_are_refused_with_invalid_token(api, mutate):
    org = make_org()
    token = mutate(_claims(org))
    response = get_calls(api, token)
    assert response.status_code == 401
    assert response.json() == {"error": "Invalid token"}
    assert token not in response.content.decode()


def test_refresh_token_cannot_be_used_as_access(api):
    org = make_org()
    response = get_calls(api, tokens_for(owner_of(org))["refresh"])
    assert response.status_code == 401
    assert response.json() == {"error": "Invalid token"}


def test_token_with_another_orgs_claim_is_refused(api):
    org_a, org_b = make_org("A"), make_org("B")
    claims = {**_claims(org_a), "org_id": str(org_b.id)}
    assert get_calls(api, _forge(claims)).status_code == 401


def test_deactivated_user_loses_access_at_once(api):
    org = make_org()
    token = access_token(org)
    User.objects.filter(pk=org.owner_id).update(is_active=False)
    assert get_calls(api, token).status_code == 401


def test_user_moved_to_another_org_loses_access_at_once(api):
    org_a, org_b = make_org("A"), make_org("B")
    make_call(org_a)
    token = access_token(org_a)
    User.objects.filter(pk=org_a.owner_id).update(organization=org_b)
    assert get_calls(api, token).status_code == 401


def test_signup_and_token_endpoints_are_rate_limited_per_address(api, settings):
    from django.core.cache import cache

    settings.AUTH_THROTTLE_RATE = "3/minute"
    cache.delete_many([f"throttle_auth_{ip}" for ip in ("127.0.0.1",)])
    statuses = [
        api.post(
            "/api/auth/token", {"email": "x@y.test", "password": "nope"}, format="json"
        ).status_code
        for _ in range(4)
    ]
    assert statuses[:3] == [401, 401, 401]
    assert statuses[3] == 429
    last = api.post(
        "/api/auth/signup", {"email": unique_email(), "password": PASSWORD}, format="json"
    )
    assert last.status_code == 429
    assert last.json()["error"].startswith("Too many requests")
    assert "Retry-After" in last
    cache.delete_many(["throttle_auth_127.0.0.1"])


def test_refresh_token_of_deleted_user_is_refused(api):
    org = make_org()
    refresh = RefreshToken.for_user(owner_of(org))
    refresh["org_id"] = str(org.id)
    User.objects.filter(pk=org.owner_id).update(is_active=False)
    response = api.post("/api/auth/token/refresh", {"refresh": str(refresh)}, format="json")
    assert response.status_code == 401


def test_login_still_works_when_the_throttle_cache_is_down(api, settings):
    settings.AUTH_THROTTLE_RATE = "3/minute"
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": "redis://127.0.0.1:1/0",
            "OPTIONS": {"socket_connect_timeout": 0.5, "socket_timeout": 0.5},
        }
    }
    org = make_org()
    response = api.post(
        "/api/auth/token", {"email": owner_of(org).email, "password": PASSWORD}, format="json"
    )
    assert response.status_code == 200
    assert "access" in response.json()
