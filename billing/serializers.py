from __future__ import annotations

from rest_framework import serializers

from billing.models import EntryType, LedgerEntry, Wallet
from voxanne.pagination import PageParams, PaginationSerializer


class WalletSerializer(serializers.ModelSerializer):
    balance_formatted = serializers.CharField(read_only=True)
    currency = serializers.SerializerMethodField()

    class Meta:
        model = Wallet
        fields = ["balance_pence", "balance_formatted", "currency", "updated_at"]

    def get_currency(self, wallet: Wallet) -> str:
        return "GBP"


class TransactionSerializer(serializers.ModelSerializer):
    class Meta:
        model = LedgerEntry
        fields = ["id", "type", "amount_pence", "balance_after_pence", "description", "created_at"]


class TransactionListSerializer(serializers.Serializer):
    transactions = TransactionSerializer(many=True)
    pagination = PaginationSerializer()


class TransactionQuery(PageParams):
    """Query parameters of the transaction list: paging, and an optional entry type."""

    type = serializers.ChoiceField(choices=EntryType.choices, required=False)
