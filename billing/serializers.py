from __future__ import annotations

from rest_framework import serializers

from billing.models import (
    SUPPORT_DESCRIPTIONS,
    AutoRecharge,
    EntryType,
    LedgerEntry,
    TopUp,
    Wallet,
    format_pence,
)
from voxanne.pagination import PageParams, PaginationSerializer


class WalletSerializer(serializers.Serializer):
    """GET /api/billing/wallet, from the view's row: the wallet's balance_pence,
    low_balance_pence and updated_at, and its clinic's auto-recharge facts (None: no settings).
    A plain Serializer over a dict: a ModelSerializer works out its fields from the model on
    every instance, and a model instance costs more than the read."""

    balance_pence = serializers.IntegerField(read_only=True)
    balance_formatted = serializers.SerializerMethodField()
    currency = serializers.SerializerMethodField()
    low_balance_pence = serializers.IntegerField(read_only=True)
    is_low_balance = serializers.SerializerMethodField()
    auto_recharge_enabled = serializers.SerializerMethodField()
    has_payment_method = serializers.SerializerMethodField()
    updated_at = serializers.DateTimeField(read_only=True)

    def get_balance_formatted(self, row: dict) -> str:
        return format_pence(row["balance_pence"])

    def get_currency(self, row: dict) -> str:
        return "GBP"

    def get_is_low_balance(self, row: dict) -> bool:
        return Wallet.is_low(row["balance_pence"], row["low_balance_pence"])

    def get_auto_recharge_enabled(self, row: dict) -> bool:
        return bool(row.get("auto_recharge_enabled"))

    def get_has_payment_method(self, row: dict) -> bool:
        return bool(row.get("auto_recharge_card") and row.get("auto_recharge_customer"))


class AutoRechargeSerializer(serializers.ModelSerializer):
    """GET/PUT /api/billing/wallet/auto-recharge. PUT takes enabled, threshold_pence and
    amount_pence (checked by billing.recharge.validate: JSON types as sent)."""

    has_payment_method = serializers.BooleanField(read_only=True)
    paused_reason = serializers.SerializerMethodField()

    class Meta:
        model = AutoRecharge
        fields = [
            "enabled",
            "threshold_pence",
            "amount_pence",
            "paused_reason",
            "paused_at",
            "has_payment_method",
        ]

    def get_paused_reason(self, rules: AutoRecharge) -> str | None:
        return rules.paused_reason or None


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


class TopUpRequestSerializer(serializers.Serializer):
    """Documents the request body; the amount is checked by billing.topups.validate_amount
    (a whole number of pence, not a string or a float)."""

    amount_pence = serializers.IntegerField()


class TopUpSerializer(serializers.ModelSerializer):
    topup_id = serializers.UUIDField(source="id", read_only=True)
    url = serializers.CharField(source="checkout_url", read_only=True)

    class Meta:
        model = TopUp
        fields = [
            "topup_id",
            "url",
            "status",
            "amount_pence",
            "refunded_pence",
            "receipt_url",
            "created_at",
            "paid_at",
        ]


class TopUpCreatedSerializer(serializers.Serializer):
    """The 201 answer of POST /api/billing/wallet/topup (the issue's contract)."""

    topup_id = serializers.UUIDField()
    url = serializers.CharField()
    status = serializers.CharField()
    amount_pence = serializers.IntegerField()


class TopUpListSerializer(serializers.Serializer):
    topups = TopUpSerializer(many=True)
    pagination = PaginationSerializer()
