"""The public one-click unsubscribe endpoint of the abandonment emails (no login: the link's
signature is the credential).

GET shows where the address stands (link scanners prefetch GETs, so GET never unsubscribes);
POST records the opt-out: the page's button, or a mail client's RFC 8058 one-click request.
Browsers get an HTML page, everything else JSON.
"""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.renderers import JSONRenderer, TemplateHTMLRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from abandonment import services
from voxanne.errors import error_responses

PAGE = "abandonment/unsubscribe.html"


class UnsubscribeStateSerializer(serializers.Serializer):
    email = serializers.CharField()
    unsubscribed = serializers.BooleanField()


class UnsubscribeView(APIView):
    authentication_classes: list = []
    permission_classes = [AllowAny]
    renderer_classes = [JSONRenderer, TemplateHTMLRenderer]

    @extend_schema(
        summary="Whether the link's address is unsubscribed (HTML: a confirmation page)",
        responses={200: UnsubscribeStateSerializer, **error_responses(400)},
    )
    def get(self, request, token: str):
        email, unsubscribed = services.unsubscribe_status(token=token)
        state = {"email": email, "unsubscribed": unsubscribed}
        return Response(UnsubscribeStateSerializer(state).data, template_name=PAGE)

    @extend_schema(
        summary="Unsubscribe from abandonment emails (one click, RFC 8058)",
        request=None,
        responses={200: UnsubscribeStateSerializer, **error_responses(400)},
    )
    def post(self, request, token: str):
        opt_out = services.unsubscribe(token=token)
        state = {"email": opt_out.email, "unsubscribed": True}
        return Response(UnsubscribeStateSerializer(state).data, template_name=PAGE)
