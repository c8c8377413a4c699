"""Onboarding's API: the wizard's telemetry events, its status and its completion."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.response import Response
from rest_framework.views import APIView

from onboarding import provisioning, rental, services
from onboarding.serializers import (
    IDEMPOTENCY_KEY_MAX_LENGTH,
    NumberSerializer,
    OnboardingCompleteSerializer,
    OnboardingEventSerializer,
    OnboardingStatusSerializer,
    OnboardingSuccessSerializer,
    ProvisionedNumberSerializer,
    ProvisionNumberSerializer,
)
from voxanne.errors import ApiError, error_responses


class OnboardingEventView(APIView):
    @extend_schema(
        summary="Record a wizard telemetry event (fire-and-forget)",
        description=(
            "Answers success even when the event cannot be stored: telemetry never blocks "
            "the wizard."
        ),
        request=OnboardingEventSerializer,
        responses={200: OnboardingSuccessSerializer, **error_responses(400, 401, 413, 415, 503)},
    )
    def post(self, request):
        serializer = OnboardingEventSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        services.record_event(org=request.org, user=request.user, **serializer.validated_data)
        return Response(OnboardingSuccessSerializer({"success": True}).data)


class OnboardingStatusView(APIView):
    @extend_schema(
        summary="The clinic's onboarding state",
        description=(
            "When the state cannot be read, answers needs_onboarding false (never blocks an "
            "existing clinic from the dashboard)."
        ),
        responses={200: OnboardingStatusSerializer, **error_responses(401, 503)},
    )
    def get(self, request):
        status = services.onboarding_status(org=request.org)
        return Response(OnboardingStatusSerializer(status).data)


class OnboardingCompleteView(APIView):
    @extend_schema(
        summary="Mark onboarding complete",
        description=(
            "Strings are stripped and cut to 200 (clinic_name) and 100 (specialty) characters; "
            "absent or blank fields leave the stored values as they are. The first completion "
            "time is kept."
        ),
        request=OnboardingCompleteSerializer,
        responses={
            200: OnboardingSuccessSerializer,
            **error_responses(400, 401, 413, 415, 500, 503),
        },
    )
    def post(self, request):
        serializer = OnboardingCompleteSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        services.complete_onboarding(org=request.org, **serializer.validated_data)
        return Response(OnboardingSuccessSerializer({"success": True}).data)


class ProvisionNumberView(APIView):
    @extend_schema(
        summary="Buy the clinic's phone number (1000 pence from the wallet, charged once)",
        description=(
            "Optional `Idempotency-Key` header (up to 255 characters, per clinic): the same key "
            "with the same body answers the first response again; with another body, 422. "
            "Without it, repeated clicks still charge at most once. 409 while another "
            "provisioning for the clinic is in flight (retry). On a provider failure the "
            "money is back in the wallet before the answer."
        ),
        parameters=[
            OpenApiParameter("Idempotency-Key", str, OpenApiParameter.HEADER, required=False)
        ],
        request=ProvisionNumberSerializer,
        responses={
            200: ProvisionedNumberSerializer,
            **error_responses(400, 401, 402, 409, 413, 415, 422, 500, 503),
        },
    )
    def post(self, request):
        serializer = ProvisionNumberSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        key = request.headers.get("Idempotency-Key")
        if key is not None and not (0 < len(key.strip()) <= IDEMPOTENCY_KEY_MAX_LENGTH):
            raise ApiError("Idempotency-Key must be 1 to 255 characters.")
        result = provisioning.provision_number(
            org=request.org,
            area_code=serializer.validated_data.get("area_code"),
            idempotency_key=key.strip() if key else None,
        )
        return Response(ProvisionedNumberSerializer(result.body()).data)


class NumberView(APIView):
    @extend_schema(
        summary="The clinic's phone number and its monthly rental",
        description=(
            "status: active (paid until paid_until), grace (the renewal is unpaid; the number "
            "is released at grace_until unless the wallet is topped up), or released. 404 "
            "when the clinic has no number yet."
        ),
        responses={200: NumberSerializer, **error_responses(401, 404)},
    )
    def get(self, request):
        number = rental.number_for(request.org)
        return Response(NumberSerializer(number).data)
