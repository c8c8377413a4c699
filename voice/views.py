"""A clinic's voice agents and calls (/api/agents, /api/calls), and Vapi's webhook."""

from __future__ import annotations

import json
import logging
import secrets

from django.conf import settings
from drf_spectacular.utils import extend_schema
from rest_framework.response import Response
from rest_framework.views import APIView

from voice import services
from voice.models import Agent, Call
from voice.serializers import (
    AgentInputSerializer,
    AgentListSerializer,
    AgentSerializer,
    CallFilterSerializer,
    CallListSerializer,
    CallSerializer,
    VapiWebhookAnswerSerializer,
)
from voxanne.errors import ApiError, error_responses
from voxanne.pagination import PageParams, paginate
from voxanne.tenancy import get_for_org

logger = logging.getLogger(__name__)


def _fields(request, *, partial: bool) -> services.AgentFields:
    serializer = AgentInputSerializer(data=request.data, partial=partial)
    serializer.is_valid(raise_exception=True)
    return services.AgentFields(**serializer.validated_data)


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

    @extend_schema(
        operation_id="agents_create",
        request=AgentInputSerializer,
        responses={201: AgentSerializer, **error_responses(400, 401, 409, 503)},
    )
    def post(self, request):
        agent = services.create_agent(org=request.org, fields=_fields(request, partial=False))
        return Response(AgentSerializer(agent).data, status=201)


class AgentDetailView(APIView):
    @extend_schema(responses={200: AgentSerializer, **error_responses(401, 404)})
    def get(self, request, agent_id: str):
        return Response(AgentSerializer(get_for_org(Agent.objects, request.org, agent_id)).data)

    @extend_schema(
        request=AgentInputSerializer,
        responses={200: AgentSerializer, **error_responses(400, 401, 404, 503)},
    )
    def patch(self, request, agent_id: str):
        agent = get_for_org(Agent.objects, request.org, agent_id)
        agent = services.update_agent(agent=agent, fields=_fields(request, partial=True))
        return Response(AgentSerializer(agent).data)


class CallListView(APIView):
    @extend_schema(
        operation_id="calls_list",
        parameters=[PageParams, CallFilterSerializer],
        responses={200: CallListSerializer, **error_responses(400, 401)},
    )
    def get(self, request):
        filters = CallFilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        calls = Call.objects.for_org(request.org).select_related("agent")
        if "started_after" in filters.validated_data:
            calls = calls.filter(started_at__gte=filters.validated_data["started_after"])
        if "started_before" in filters.validated_data:
            calls = calls.filter(started_at__lte=filters.validated_data["started_before"])
        items, pagination = paginate(calls, request.query_params)
        return Response({"calls": CallSerializer(items, many=True).data, "pagination": pagination})


class CallDetailView(APIView):
    @extend_schema(responses={200: CallSerializer, **error_responses(401, 404)})
    def get(self, request, call_id: str):
        calls = Call.objects.select_related("agent")
        return Response(CallSerializer(get_for_org(calls, request.org, call_id)).data)


class WebhookSecretInvalid(ApiError):
    status_code = 401
    default_message = "The webhook secret is missing or wrong."
    code = "webhook_unauthorized"


class WebhookBodyInvalid(ApiError):
    default_message = "The webhook body is not a Vapi server message."
    code = "webhook_malformed"


def _verify_secret(request) -> None:
    """X-Vapi-Secret against VAPI_WEBHOOK_SECRET in constant time; unset fails closed."""
    expected = settings.VAPI_WEBHOOK_SECRET
    given = request.headers.get("X-Vapi-Secret", "")
    if not expected or not secrets.compare_digest(given.encode(), expected.encode()):
        raise WebhookSecretInvalid()


class VapiWebhookView(APIView):
    """Vapi's server messages. Only assistant-request and end-of-call-report do anything."""

    authentication_classes: list = []
    permission_classes: list = []
    throttle_classes: list = []

    @extend_schema(
        operation_id="vapi_webhook",
        request=None,
        responses={200: VapiWebhookAnswerSerializer, **error_responses(400, 401, 503)},
    )
    def post(self, request):
        _verify_secret(request)
        try:
            message = json.loads(request.body)["message"]
            kind = message["type"]
        except (ValueError, KeyError, TypeError):
            raise WebhookBodyInvalid() from None
        if not isinstance(message, dict):
            raise WebhookBodyInvalid()
        # The system scope is TenantMiddleware's (WEBHOOK_PATHS).
        if kind == "assistant-request":
            return Response(services.answer_assistant_request(message))
        if kind == "end-of-call-report":
            facts = services.CallFacts.parse(message.get("call") or {}, message)
            if not facts.vapi_call_id:
                raise WebhookBodyInvalid("The end-of-call-report has no call id.")
            handled = services.receive_call_report(facts=facts, payload=message)
            return Response({"outcome": handled.outcome})
        return Response({"outcome": "ignored"})
