from __future__ import annotations

from rest_framework import serializers

from voice.models import Agent, Call
from voxanne.pagination import PaginationSerializer


class AgentSerializer(serializers.ModelSerializer):
    class Meta:
        model = Agent
        fields = ["id", "name", "persona", "voice", "is_active", "created_at", "updated_at"]


class CallSerializer(serializers.ModelSerializer):
    agent_id = serializers.UUIDField(allow_null=True)

    class Meta:
        model = Call
        fields = [
            "id",
            "agent_id",
            "direction",
            "caller_number",
            "status",
            "started_at",
            "duration_seconds",
            "summary",
            "created_at",
        ]


class AgentListSerializer(serializers.Serializer):
    agents = AgentSerializer(many=True)
    pagination = PaginationSerializer()


class CallListSerializer(serializers.Serializer):
    calls = CallSerializer(many=True)
    pagination = PaginationSerializer()
