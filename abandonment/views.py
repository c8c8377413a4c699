"""The public one-click unsubscribe endpoint of the abandonment emails (no login: the link's
signature is the credential).

GET shows a confirmation page (link scanners prefetch GETs, so GET never unsubscribes);
POST records the opt-out: the page's button, or a mail client's RFC 8058 one-click request.
"""

from __future__ import annotations

from django.shortcuts import render
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from abandonment import services
from voxanne.errors import error_responses


class UnsubscribedSerializer(serializers.Serializer):
    unsubscribed = serializers.BooleanField()
    email = serializers.CharField()


def _wants_html(request) -> bool:
    return "text/html" in request.META.get("HTTP_ACCEPT", "")


class UnsubscribeView(APIView):
    authentication_classes: list = []
    permission_classes = [AllowAny]

    @extend_schema(
        summary="Confirm unsubscribing from abandonment emails (HTML page)",
        responses={200: OpenApiResponse(description="HTML page"), **error_responses(400)},
    )
    def get(self, request, token: str):
        org_id, email = services.read_unsubscribe_token(token)
        context = {
            "email": email,
            "done": services.is_unsubscribed(org_id),
            "action": request.path,
        }
        return render(request, "abandonment/unsubscribe.html", context)

    @extend_schema(
        summary="Unsubscribe from abandonment emails (one click, RFC 8058)",
        request=None,
        responses={200: UnsubscribedSerializer, **error_responses(400)},
    )
    def post(self, request, token: str):
        opt_out = services.unsubscribe(token=token)
        if _wants_html(request):
            context = {"email": opt_out.email, "done": True, "action": request.path}
            return render(request, "abandonment/unsubscribe.html", context)
        return Response(UnsubscribedSerializer({"unsubscribed": True, "email": opt_out.email}).data)
