"""Core endpoints: signup and tokens, health."""

from __future__ import annotations

import logging

from django.db import connection
from django.http import JsonResponse
from django.utils.decorators import method_decorator
from django.views.decorators.cache import never_cache
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.permissions import AllowAny
from rest_framework.renderers import JSONRenderer, TemplateHTMLRenderer
from rest_framework.response import Response
from rest_framework.throttling import UserRateThrottle
from rest_framework.views import APIView
from rest_framework_simplejwt.views import TokenObtainPairView, TokenRefreshView

from voxanne import services
from voxanne.auth import AuthRateThrottle, SignInEmailThrottle, tokens_for
from voxanne.errors import InvalidCredentials, error_responses
from voxanne.serializers import (
    ClinicTokenRefreshSerializer,
    ClinicTokenSerializer,
    SignupResponseSerializer,
    SignupSerializer,
)
from voxanne.tenancy import system_context

logger = logging.getLogger(__name__)


@method_decorator(never_cache, name="dispatch")  # tokens must not sit in any cache
class SignupView(APIView):
    authentication_classes: list = []
    permission_classes = [AllowAny]
    throttle_classes = [AuthRateThrottle]

    @extend_schema(
        request=SignupSerializer,
        responses={201: SignupResponseSerializer, **error_responses(400, 413, 415, 429)},
    )
    def post(self, request):
        serializer = SignupSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        result = services.sign_up(**serializer.validated_data)
        services.send_verification_email(result.user, fail_quietly=True)
        body = {
            **tokens_for(result.user),
            "org_id": result.organization.id,
            "user_id": result.user.id,
        }
        return Response(SignupResponseSerializer(body).data, status=status.HTTP_201_CREATED)


class EmailVerificationStateSerializer(serializers.Serializer):
    email = serializers.CharField()
    verified = serializers.BooleanField()


class VerifyEmailView(APIView):
    """The link sign-up emails (public: its signature is the credential). GET shows a page
    with a button (mail scanners prefetch GETs, so GET verifies nothing); POST verifies.
    Browsers get an HTML page, everything else JSON."""

    authentication_classes: list = []
    permission_classes = [AllowAny]
    renderer_classes = [JSONRenderer, TemplateHTMLRenderer]
    template_name = "voxanne/verify_email.html"

    @extend_schema(
        summary="Whether the link's address is verified (HTML: a page with a button)",
        responses={200: EmailVerificationStateSerializer, **error_responses(400)},
    )
    def get(self, request, token: str):
        return self._state(services.email_verification_status(token=token))

    @extend_schema(
        summary="Verify the owner's email address",
        request=None,
        responses={200: EmailVerificationStateSerializer, **error_responses(400)},
    )
    def post(self, request, token: str):
        return self._state(services.verify_email(token=token))

    def _state(self, user) -> Response:
        state = {"email": user.email, "verified": user.email_verified_at is not None}
        return Response(EmailVerificationStateSerializer(state).data)


class ResendThrottle(UserRateThrottle):
    """A few verification emails per user an hour (each one is an email we send)."""

    scope = "verify_email_resend"
    rate = "3/hour"

    def allow_request(self, request, view):
        try:
            return super().allow_request(request, view)
        except Exception:
            # The cache (Redis) is down: sending one more email beats refusing the clinic.
            logger.warning("resend throttle unavailable; allowing the request", exc_info=True)
            return True


class ResendResultSerializer(serializers.Serializer):
    sent = serializers.BooleanField()
    verified = serializers.BooleanField()


class ResendVerificationView(APIView):
    throttle_classes = [ResendThrottle]

    @extend_schema(
        summary="Email the verification link again (nothing is sent once verified)",
        request=None,
        responses={200: ResendResultSerializer, **error_responses(401, 429, 503)},
    )
    def post(self, request):
        sent = services.resend_verification_email(request.user)
        result = {"sent": sent, "verified": request.user.email_verified_at is not None}
        return Response(ResendResultSerializer(result).data)


@method_decorator(never_cache, name="dispatch")
class TokenView(TokenObtainPairView):
    authentication_classes: list = []
    serializer_class = ClinicTokenSerializer
    throttle_classes = [AuthRateThrottle, SignInEmailThrottle]

    @extend_schema(responses={200: None, **error_responses(400, 401, 429)})
    def post(self, request, *args, **kwargs):
        with system_context("login"):
            try:
                return super().post(request, *args, **kwargs)
            except AuthenticationFailed:
                raise InvalidCredentials() from None


@method_decorator(never_cache, name="dispatch")
class RefreshView(TokenRefreshView):
    authentication_classes: list = []
    serializer_class = ClinicTokenRefreshSerializer
    throttle_classes = [AuthRateThrottle]

    @extend_schema(responses={200: None, **error_responses(400, 401, 429)})
    def post(self, request, *args, **kwargs):
        return super().post(request, *args, **kwargs)


def healthz(request):
    """The process is up."""
    return JsonResponse({"status": "ok"})


def readyz(request):
    """The database and the broker answer."""
    from voxanne.celery import app as celery_app

    checks = {}
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        checks["database"] = "ok"
    except Exception:
        logger.warning("readyz: database unreachable", exc_info=True)
        checks["database"] = "unavailable"
    try:
        with celery_app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
        checks["broker"] = "ok"
    except Exception:
        logger.warning("readyz: broker unreachable", exc_info=True)
        checks["broker"] = "unavailable"
    ready = all(v == "ok" for v in checks.values())
    body = {"status": "ok" if ready else "unavailable", "checks": checks}
    return JsonResponse(body, status=200 if ready else 503)
