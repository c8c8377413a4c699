from __future__ import annotations

from rest_framework import serializers

from billing.models import SUPPORT_DESCRIPTIONS, EntryType, LedgerEntry, Wallet
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
    description = serializers.SerializerMethodField()

    class Meta:
        model = LedgerEntry
        fields = ["id", "type", "amount_pence", "balance_after_pence", "description", "created_at"]

    def get_description(self, entry: LedgerEntry) -> str:
        # Entries support wrote before internal_note existed hold support's reason here; the
        # ledger cannot be rewritten, so a clinic is shown the plain sentence instead.
        if entry.created_by_id and entry.type in SUPPORT_DESCRIPTIONS:
            return SUPPORT_DESCRIPTIONS[entry.type]
        return entry.description


class TransactionListSerializer(serializers.Serializer):
    transactions = TransactionSerializer(many=True)
    pagination = PaginationSerializer()


class TransactionQuery(PageParams):
    """Query parameters of the transaction list: paging, and an optional entry type."""

    type = serializers.ChoiceField(choices=EntryType.choices, required=False)
