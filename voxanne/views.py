"""Core endpoints: signup and tokens, calls and agents, health."""

from __future__ import annotations

import logging

from django.db import connection
from django.http import JsonResponse
from django.utils.decorators import method_decorator
from django.views.decorators.cache import never_cache
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView
from rest_framework_simplejwt.views import TokenObtainPairView, TokenRefreshView

from voxanne import services
from voxanne.auth import AuthRateThrottle, SignInEmailThrottle, tokens_for
from voxanne.errors import InvalidCredentials, error_responses
from voxanne.models import Agent, Call
from voxanne.pagination import PageParams, paginate
from voxanne.serializers import (
    AgentListSerializer,
    AgentSerializer,
    CallListSerializer,
    CallSerializer,
    ClinicTokenRefreshSerializer,
    ClinicTokenSerializer,
    SignupResponseSerializer,
    SignupSerializer,
)
from voxanne.tenancy import get_for_org, system_context

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
        body = {
            **tokens_for(result.user),
            "org_id": result.organization.id,
            "user_id": result.user.id,
        }
        return Response(SignupResponseSerializer(body).data, status=status.HTTP_201_CREATED)


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


class AgentListView(APIView):
    @extend_schema(
        operation_id="agents_list",
        parameters=[PageParams],
        responses={200: AgentListSerializer, **error_responses(400, 401)},
    )
    def get(self, request):
        items, pagination = paginate(Agent.objects.for_org(request.org), request.query_params)
        return Response(
            {"agents": AgentSerializer(items, many=True).data, "pagination": pagination}
        )


class AgentDetailView(APIView):
    @extend_schema(responses={200: AgentSerializer, **error_responses(401, 404)})
    def get(self, request, agent_id: str):
        return Response(AgentSerializer(get_for_org(Agent.objects, request.org, agent_id)).data)


class CallListView(APIView):
    @extend_schema(
        operation_id="calls_list",
        parameters=[PageParams],
        responses={200: CallListSerializer, **error_responses(400, 401)},
    )
    def get(self, request):
        items, pagination = paginate(Call.objects.for_org(request.org), request.query_params)
        return Response({"calls": CallSerializer(items, many=True).data, "pagination": pagination})


class CallDetailView(APIView):
    @extend_schema(responses={200: CallSerializer, **error_responses(401, 404)})
    def get(self, request, call_id: str):
        return Response(CallSerializer(get_for_org(Call.objects, request.org, call_id)).data)


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
