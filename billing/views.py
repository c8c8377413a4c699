"""The clinic's wallet API: its balance and its ledger, for the token's org only."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework.response import Response
from rest_framework.views import APIView

from billing.models import LedgerEntry
from billing.serializers import (
    TransactionListSerializer,
    TransactionQuery,
    TransactionSerializer,
    WalletSerializer,
)
from billing.services import wallet_for
from voxanne.errors import error_responses
from voxanne.pagination import paginate


class WalletView(APIView):
    @extend_schema(responses={200: WalletSerializer, **error_responses(401)})
    def get(self, request):
        return Response(WalletSerializer(wallet_for(request.org)).data)


class TransactionListView(APIView):
    @extend_schema(
        parameters=[TransactionQuery],
        responses={200: TransactionListSerializer, **error_responses(400, 401)},
    )
    def get(self, request):
        query = TransactionQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        entries = LedgerEntry.objects.for_org(request.org).order_by("-sequence")
        if "type" in query.validated_data:
            entries = entries.filter(type=query.validated_data["type"])
        items, pagination = paginate(entries, request.query_params)
        return Response(
            {"transactions": TransactionSerializer(items, many=True).data, "pagination": pagination}
        )
