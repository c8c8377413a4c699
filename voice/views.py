"""A clinic's voice agents and calls: /api/agents, /api/calls."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework.response import Response
from rest_framework.views import APIView

from voice.models import Agent, Call
from voice.serializers import (
    AgentListSerializer,
    AgentSerializer,
    CallListSerializer,
    CallSerializer,
)
from voxanne.errors import error_responses
from voxanne.pagination import PageParams, paginate
from voxanne.tenancy import get_for_org


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
