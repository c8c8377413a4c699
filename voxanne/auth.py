"""Clinic staff authentication: JWTs carrying the org, checked against the database."""

from __future__ import annotations

import hashlib
import logging
from uuid import UUID

from django.conf import settings
from rest_framework.throttling import SimpleRateThrottle
from rest_framework_simplejwt.authentication import JWTAuthentication
from rest_framework_simplejwt.exceptions import InvalidToken, TokenError
from rest_framework_simplejwt.settings import api_settings
from rest_framework_simplejwt.tokens import AccessToken, RefreshToken, Token
from rest_framework_simplejwt.utils import get_md5_hash_password

from voxanne import tenancy
from voxanne.models import User

ORG_CLAIM = "org_id"

logger = logging.getLogger(__name__)


def tokens_for(user: User) -> dict[str, str]:
    """A refresh/access pair for a clinic user; both carry the user's org."""
    refresh = RefreshToken.for_user(user)
    refresh[ORG_CLAIM] = str(user.organization_id)
    return {"refresh": str(refresh), "access": str(refresh.access_token)}


def read_token(token_class: type[Token], raw: str | bytes) -> Token:
    """A verified token of `token_class`. Raises InvalidToken for anything else.

    A validly signed token can still carry an `exp` no datetime can hold; simplejwt then
    raises OverflowError/ValueError/OSError instead of TokenError.
    """
    try:
        return token_class(raw)
    except (TokenError, OverflowError, ValueError, OSError):
        raise InvalidToken() from None


def user_for_token(token: Token) -> User:
    """The user a verified token speaks for: active and still in the token's org.

    Raises InvalidToken otherwise (malformed claims, user deleted, deactivated or moved, or
    the password changed since the token was issued).
    """
    org_id = token.get(ORG_CLAIM)
    user_id = token.get(settings.SIMPLE_JWT["USER_ID_CLAIM"])
    try:
        UUID(str(org_id))
        UUID(str(user_id))
    except ValueError:
        raise InvalidToken() from None
    user = User.objects.select_related("organization").filter(pk=user_id).first()
    if user is None or not user.is_active or str(user.organization_id) != str(org_id):
        raise InvalidToken()
    if token.get(api_settings.REVOKE_TOKEN_CLAIM) != get_md5_hash_password(user.password):
        raise InvalidToken()  # issued before the password last changed
    return user


class OrgJWTAuthentication(JWTAuthentication):
    """Accepts an access token only while its user is active and still in the token's org.

    On success the request's tenant scope becomes that org (request.org).
    """

    def get_validated_token(self, raw_token):
        return read_token(AccessToken, raw_token)

    def get_user(self, validated_token):
        return user_for_token(validated_token)

    def authenticate(self, request):
        result = super().authenticate(request)
        if result is not None:
            user, _ = result
            request._request.org = user.organization
            tenancy.activate_org(user.organization_id)
        return result


def client_address(request) -> str:
    """The client's address: the connection's peer, or with TRUSTED_PROXY_COUNT proxies in
    front of us, the X-Forwarded-For entry the outermost trusted proxy appended.

    Entries before that one are whatever the client wrote, so they never count.
    """
    proxies = settings.TRUSTED_PROXY_COUNT
    if proxies > 0:
        forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
        hops = [hop.strip() for hop in forwarded.split(",") if hop.strip()]
        if hops:
            return hops[-min(proxies, len(hops))]
    return request.META.get("REMOTE_ADDR", "")


class AuthRateThrottle(SimpleRateThrottle):
    """Per client address, for signup and token endpoints (rate: AUTH_THROTTLE_RATE)."""

    scope = "auth"
    rate_setting = "AUTH_THROTTLE_RATE"

    def get_rate(self):
        return getattr(settings, self.rate_setting)

    def allow_request(self, request, view):
        self.rate = self.get_rate()
        if self.rate is None:
            return True
        self.num_requests, self.duration = self.parse_rate(self.rate)
        try:
            return super().allow_request(request, view)
        except Exception:
            # The cache (Redis) is down: let clinics sign in rather than fail every login.
            logger.warning("auth throttle unavailable; allowing the request", exc_info=True)
            return True

    def get_ident(self, request):
        return client_address(request)

    def get_cache_key(self, request, view):
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}


class SignInEmailThrottle(AuthRateThrottle):
    """Sign-in attempts per email address from any client (rate: AUTH_EMAIL_THROTTLE_RATE), so
    guessing one clinic's password from many addresses is as slow as from one."""

    scope = "auth_email"
    rate_setting = "AUTH_EMAIL_THROTTLE_RATE"

    def get_cache_key(self, request, view):
        email = request.data.get("email") if isinstance(request.data, dict) else None
        if not isinstance(email, str) or not email.strip():
            return None  # the serializer refuses the request anyway
        # Hashed: the cache holds no addresses, and any input makes a short, safe key.
        digest = hashlib.sha256(email.strip().lower().encode()).hexdigest()
        return self.cache_format % {"scope": self.scope, "ident": digest}
