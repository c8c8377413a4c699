"""Clinic staff authentication: JWTs carrying the org, checked against the database."""

from __future__ import annotations

import logging
from uuid import UUID

from django.conf import settings
from rest_framework.throttling import SimpleRateThrottle
from rest_framework_simplejwt.authentication import JWTAuthentication
from rest_framework_simplejwt.exceptions import InvalidToken
from rest_framework_simplejwt.tokens import RefreshToken

from voxanne import tenancy
from voxanne.models import User

ORG_CLAIM = "org_id"

logger = logging.getLogger(__name__)


def tokens_for(user: User) -> dict[str, str]:
    """A refresh/access pair for a clinic user; both carry the user's org."""
    refresh = RefreshToken.for_user(user)
    refresh[ORG_CLAIM] = str(user.organization_id)
    return {"refresh": str(refresh), "access": str(refresh.access_token)}


class OrgJWTAuthentication(JWTAuthentication):
    """Accepts an access token only while its user is active and still in the token's org.

    On success the request's tenant scope becomes that org (request.org).
    """

    def get_user(self, validated_token):
        org_id = validated_token.get(ORG_CLAIM)
        user_id = validated_token.get(settings.SIMPLE_JWT["USER_ID_CLAIM"])
        try:
            UUID(str(org_id))
            UUID(str(user_id))
        except ValueError:
            raise InvalidToken() from None
        user = User.objects.select_related("organization").filter(pk=user_id).first()
        if user is None or not user.is_active or str(user.organization_id) != str(org_id):
            raise InvalidToken()
        return user

    def authenticate(self, request):
        result = super().authenticate(request)
        if result is not None:
            user, _ = result
            request._request.org = user.organization
            tenancy.activate_org(user.organization_id)
        return result


class AuthRateThrottle(SimpleRateThrottle):
    """Per client address, for signup and token endpoints (rate: AUTH_THROTTLE_RATE)."""

    scope = "auth"

    def get_rate(self):
        return settings.AUTH_THROTTLE_RATE

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

    def get_cache_key(self, request, view):
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}
