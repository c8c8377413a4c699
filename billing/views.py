"""The clinic's wallet API (its balance, ledger and top-ups, for the token's org only), Stripe's
webhook, and the page Stripe sends the clinic back to."""

from __future__ import annotations

import logging

from django.db.models import F
from django.http import Http404, HttpResponse
from django.shortcuts import render
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from billing import recharge, topups
from billing import stripe as payments
from billing.models import LedgerEntry, TopUp, TopUpStatus, Wallet, format_pence
from billing.serializers import (
    AutoRechargeSerializer,
    TopUpCreatedSerializer,
    TopUpListSerializer,
    TopUpRequestSerializer,
    TopUpSerializer,
    TransactionListSerializer,
    TransactionQuery,
    TransactionSerializer,
    WalletSerializer,
)
from billing.services import wallet_for
from voxanne.errors import ApiError, error_responses
from voxanne.pagination import paginate
from voxanne.tenancy import get_for_org, system_context

logger = logging.getLogger(__name__)


class WalletView(APIView):
    @extend_schema(responses={200: WalletSerializer, **error_responses(401)})
    def get(self, request):
        # One statement: the wallet's figures and the two facts of the auto-recharge settings
        # it reports, as values (a model instance costs more than this read's query).
        figures = ("balance_pence", "low_balance_pence", "updated_at")
        try:
            row = Wallet.objects.values(
                *figures,
                auto_recharge_enabled=F("org__auto_recharge__enabled"),
                auto_recharge_card=F("org__auto_recharge__stripe_payment_method_id"),
                auto_recharge_customer=F("org__auto_recharge__stripe_customer_id"),
            ).get(org_id=request.org.pk)
        except Wallet.DoesNotExist:  # its first read: a new wallet, no settings either
            wallet = wallet_for(request.org)
            row = {name: getattr(wallet, name) for name in figures}
        return Response(WalletSerializer(row).data)


class AutoRechargeView(APIView):
    @extend_schema(
        summary="The clinic's auto-recharge settings",
        description=(
            "paused_reason is set (and no charge is tried, though enabled stays true) after "
            "a charge of the saved card was refused; saving the settings again clears it."
        ),
        responses={200: AutoRechargeSerializer, **error_responses(401)},
    )
    def get(self, request):
        return Response(AutoRechargeSerializer(recharge.settings_for(request.org)).data)

    @extend_schema(
        summary="Save the clinic's auto-recharge settings",
        description=(
            "`{enabled, threshold_pence, amount_pence}`: threshold at least 500, amount within "
            "the top-up limits. Enabling needs a saved card (the one of the clinic's paid "
            "Checkout top-up): 400 without. Saving clears a pause."
        ),
        request=AutoRechargeSerializer,
        responses={200: AutoRechargeSerializer, **error_responses(400, 401, 503)},
    )
    def put(self, request):
        body = request.data if isinstance(request.data, dict) else {}
        missing = [k for k in ("enabled", "threshold_pence", "amount_pence") if k not in body]
        if missing:
            raise recharge.AutoRechargeInvalid(f"{', '.join(missing)} required.")
        rules = recharge.update_settings(
            org=request.org,
            enabled=body["enabled"],
            threshold_pence=body["threshold_pence"],
            amount_pence=body["amount_pence"],
        )
        return Response(AutoRechargeSerializer(rules).data)


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


class TopUpView(APIView):
    @extend_schema(
        request=TopUpRequestSerializer,
        parameters=[OpenApiParameter("Idempotency-Key", str, OpenApiParameter.HEADER)],
        responses={201: TopUpCreatedSerializer, **error_responses(400, 401, 422, 500, 503)},
    )
    def post(self, request):
        body = request.data if isinstance(request.data, dict) else {}
        if "amount_pence" not in body:
            raise topups.TopUpAmountInvalid("amount_pence is required.")
        topup = topups.start_topup(
            org=request.org,
            amount_pence=body["amount_pence"],
            idempotency_key=request.headers.get("Idempotency-Key"),
        )
        data = TopUpSerializer(topup).data
        return Response(
            {k: data[k] for k in ("topup_id", "url", "status", "amount_pence")}, status=201
        )


class TopUpListView(APIView):
    @extend_schema(
        operation_id="billing_topups_list",
        responses={200: TopUpListSerializer, **error_responses(400, 401)},
    )
    def get(self, request):
        items, pagination = paginate(
            TopUp.objects.for_org(request.org).order_by("-created_at"), request.query_params
        )
        return Response(
            {"topups": TopUpSerializer(items, many=True).data, "pagination": pagination}
        )


class TopUpDetailView(APIView):
    @extend_schema(responses={200: TopUpSerializer, **error_responses(401, 404)})
    def get(self, request, topup_id: str):
        topup = get_for_org(TopUp.objects, request.org, topup_id)
        return Response(TopUpSerializer(topups.check_topup(topup)).data)


class InvalidSignature(ApiError):
    default_message = "Invalid or missing Stripe signature."
    code = "invalid_signature"


class WebhooksNotConfigured(ApiError):
    status_code = 500
    default_message = "Stripe webhooks are not configured."
    code = "webhooks_not_configured"


class WebhookAnswer(serializers.Serializer):
    received = serializers.BooleanField()
    outcome = serializers.CharField()


class StripeWebhookView(APIView):
    """Stripe's deliveries: no JWT, the signature on the raw body is the authentication."""

    authentication_classes: list = []
    permission_classes = [AllowAny]

    @extend_schema(
        request=None,
        parameters=[OpenApiParameter("Stripe-Signature", str, OpenApiParameter.HEADER)],
        responses={200: WebhookAnswer, **error_responses(400, 500, 503)},
    )
    def post(self, request):
        try:
            handled = topups.handle_stripe_webhook(
                request.body, request.headers.get("Stripe-Signature")
            )
        except payments.BadSignature as exc:
            logger.warning("stripe webhook refused: %s", exc)
            raise InvalidSignature() from None
        except payments.NotConfigured:
            logger.error("a stripe webhook arrived but STRIPE_WEBHOOK_SECRET is not set")
            raise WebhooksNotConfigured() from None
        return Response({"received": True, "outcome": handled.outcome})


RETURN_MESSAGES = {
    TopUpStatus.PAID: "Payment received: {amount} has been added to your wallet.",
    TopUpStatus.PENDING: "We are waiting for your payment of {amount} to be confirmed. "
    "This page will show it once Stripe tells us.",
    TopUpStatus.FAILED: "Your payment of {amount} did not go through. Nothing was charged.",
    TopUpStatus.EXPIRED: "This top-up of {amount} expired before it was paid. Nothing was charged.",
    TopUpStatus.REFUNDED: "This top-up of {amount} was refunded to your card.",
    TopUpStatus.PARTIALLY_REFUNDED: "This top-up of {amount} was partly refunded to your card.",
}


def topup_return_page(request, topup_id) -> HttpResponse:
    """Where Stripe sends the clinic back (TOPUP_SUCCESS_URL / TOPUP_CANCEL_URL's default):
    checks the top-up with Stripe and says what happened. The unguessable id is the key."""
    with system_context("top-up return page"):
        topup = TopUp.objects.filter(pk=topup_id).first()
        if topup is None:
            raise Http404()
        topup = topups.check_topup(topup)
    cancelled = "cancelled" in request.GET and topup.status == TopUpStatus.PENDING
    amount = format_pence(topup.paid_pence or topup.amount_pence)
    message = (
        f"You cancelled the payment of {amount}. Nothing was charged."
        if cancelled
        else RETURN_MESSAGES[topup.status].format(amount=amount)
    )
    return render(
        request,
        "billing/topup_return.html",
        {"topup": topup, "message": message, "cancelled": cancelled},
    )
