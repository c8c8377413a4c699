from __future__ import annotations

from rest_framework import serializers

from voice.models import Agent, Call
from voxanne.pagination import PaginationSerializer


class AgentSerializer(serializers.ModelSerializer):
    class Meta:
        model = Agent
        fields = [
            "id",
            "name",
            "first_message",
            "instructions",
            "voice",
            "vapi_assistant_id",
            "status",
            "is_active",
            "persona",
            "created_at",
            "updated_at",
        ]


class AgentInputSerializer(serializers.Serializer):
    """POST and PATCH /api/agents: every field optional (the clinic's defaults fill the gaps)."""

    name = serializers.CharField(max_length=200, required=False)
    first_message = serializers.CharField(max_length=1000, required=False)
    instructions = serializers.CharField(max_length=10000, required=False)
    voice = serializers.CharField(max_length=100, required=False)


class CallAgentSerializer(serializers.ModelSerializer):
    class Meta:
        model = Agent
        fields = ["id", "name"]


class CallSerializer(serializers.ModelSerializer):
    agent_id = serializers.UUIDField(allow_null=True)
    agent = CallAgentSerializer(allow_null=True)

    class Meta:
        model = Call
        fields = [
            "id",
            "agent_id",
            "agent",
            "direction",
            "caller_number",
            "status",
            "started_at",
            "ended_at",
            "duration_seconds",
            "cost_pence",
            "ended_reason",
            "summary",
            "recording_url",
            "created_at",
        ]


class CallFilterSerializer(serializers.Serializer):
    """GET /api/calls?started_after=&started_before= (ISO 8601, inclusive bounds)."""

    started_after = serializers.DateTimeField(required=False)
    started_before = serializers.DateTimeField(required=False)

    def validate(self, attrs):
        after, before = attrs.get("started_after"), attrs.get("started_before")
        if after and before and after > before:
            raise serializers.ValidationError("started_after must not be after started_before.")
        return attrs


class AgentListSerializer(serializers.Serializer):
    agents = AgentSerializer(many=True)
    pagination = PaginationSerializer()


class CallListSerializer(serializers.Serializer):
    calls = CallSerializer(many=True)
    pagination = PaginationSerializer()


class VapiWebhookAnswerSerializer(serializers.Serializer):
    """What the webhook answers: for assistant-request, `assistantId` + `assistantOverrides`
    or `error` (spoken to the caller); for other messages, how they were handled."""

    assistantId = serializers.CharField(required=False)
    assistantOverrides = serializers.DictField(required=False)
    error = serializers.CharField(required=False)
    outcome = serializers.CharField(required=False)
