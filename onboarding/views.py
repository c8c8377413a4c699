"""Onboarding's API: the wizard's telemetry events, its status and its completion."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework.response import Response
from rest_framework.views import APIView

from onboarding import services
from onboarding.serializers import (
    CompleteSerializer,
    EventSerializer,
    StatusSerializer,
    SuccessSerializer,
)
from voxanne.errors import error_responses


class OnboardingEventView(APIView):
    @extend_schema(
        summary="Record a wizard telemetry event (fire-and-forget)",
        description=(
            "Answers success even when the event cannot be stored: telemetry never blocks "
            "the wizard."
        ),
        request=EventSerializer,
        responses={200: SuccessSerializer, **error_responses(400, 401, 413, 415, 503)},
    )
    def post(self, request):
        serializer = EventSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        services.record_event(org=request.org, user=request.user, **serializer.validated_data)
        return Response(SuccessSerializer({"success": True}).data)


class OnboardingStatusView(APIView):
    @extend_schema(
        summary="The clinic's onboarding state",
        description=(
            "When the state cannot be read, answers needs_onboarding false (never blocks an "
            "existing clinic from the dashboard)."
        ),
        responses={200: StatusSerializer, **error_responses(401, 503)},
    )
    def get(self, request):
        status = services.onboarding_status(org=request.org)
        return Response(StatusSerializer(status).data)


class OnboardingCompleteView(APIView):
    @extend_schema(
        summary="Mark onboarding complete",
        description=(
            "Strings are stripped and cut to 200 (clinic_name) and 100 (specialty) characters; "
            "absent or blank fields leave the stored values as they are. The first completion "
            "time is kept."
        ),
        request=CompleteSerializer,
        responses={200: SuccessSerializer, **error_responses(400, 401, 413, 415, 500, 503)},
    )
    def post(self, request):
        serializer = CompleteSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        services.complete_onboarding(org=request.org, **serializer.validated_data)
        return Response(SuccessSerializer({"success": True}).data)
