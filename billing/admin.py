"""Support's wallet screens: the clinic's balance and ledger, refunds and manual credit.

Ledger entries and wallets are view-only here. Money moves only through the two custom views,
each shaped like Django's UserAdmin.user_change_password: permission check, form, one service
call, a `log_change` entry on the clinic, a message, a redirect.
"""

from __future__ import annotations

import uuid

from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.db.models import F, OuterRef, Subquery, Sum
from django.db.models.functions import Coalesce
from django.http import Http404, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.decorators import method_decorator
from django.utils.html import format_html
from django.views.decorators.csrf import csrf_protect

from billing import services
from billing.forms import CreditForm, RefundForm, pounds
from billing.models import AutoRecharge, LedgerEntry, RechargeAttempt, Wallet, format_pence
from voxanne.admin import ReadOnlyAdminMixin, add_organization_inline

REFUND_PERMISSION = "billing.issue_refund"
CREDIT_PERMISSION = "billing.add_credit"
INLINE_ENTRIES = 50  # newest entries shown on the clinic page; the rest are one link away

csrf_protect_m = method_decorator(csrf_protect)


def _with_refunded(queryset):
    """Annotate each entry with the pence already refunded against it (one query, no N+1)."""
    refunded = (
        LedgerEntry.objects.filter(reverses=OuterRef("pk"))
        .values("reverses")
        .annotate(total=Sum("amount_pence"))
        .values("total")
    )
    return queryset.select_related("created_by", "reverses").annotate(
        refunded_pence=Coalesce(Subquery(refunded), 0)
    )


def _refund_link(entry: LedgerEntry) -> str:
    if entry.amount_pence >= 0:
        return ""
    left = -entry.amount_pence - getattr(entry, "refunded_pence", 0)
    if left <= 0:
        return "Refunded in full"
    url = reverse("admin:billing_ledgerentry_refund", args=[entry.pk])
    return format_html('<a class="button" href="{}">Issue refund</a>', url)


def _org_url(org_id) -> str:
    return reverse("admin:voxanne_organization_change", args=[org_id])


class LedgerColumnsMixin:
    @admin.display(description="amount")
    def amount(self, entry: LedgerEntry) -> str:
        return format_pence(entry.amount_pence)

    @admin.display(description="balance after")
    def balance_after(self, entry: LedgerEntry) -> str:
        return format_pence(entry.balance_after_pence)

    @admin.display(description="by")
    def by(self, entry: LedgerEntry) -> str:
        return entry.created_by.email if entry.created_by_id else "system"

    @admin.display(description="refund")
    def refund_link(self, entry: LedgerEntry) -> str:
        return _refund_link(entry)


class WalletInline(ReadOnlyAdminMixin, admin.StackedInline):
    model = Wallet
    verbose_name_plural = "wallet"
    can_delete = False
    extra = 0
    max_num = 1

    def get_fields(self, request, obj=None):
        fields = ["balance", "ledger"]
        if request.user.has_perm(CREDIT_PERMISSION):
            fields.append("add_credit")
        return fields

    def get_readonly_fields(self, request, obj=None):
        return self.get_fields(request, obj)

    @admin.display(description="balance")
    def balance(self, wallet: Wallet) -> str:
        return wallet.balance_formatted

    @admin.display(description="ledger")
    def ledger(self, wallet: Wallet) -> str:
        url = reverse("admin:billing_ledgerentry_changelist") + f"?org__id__exact={wallet.org_id}"
        return format_html(
            '{} entries (newest {} below). <a href="{}">All entries</a>',
            wallet.last_sequence,
            INLINE_ENTRIES,
            url,
        )

    @admin.display(description="credit")
    def add_credit(self, wallet: Wallet) -> str:
        url = reverse("admin:billing_wallet_credit", args=[wallet.pk])
        return format_html('<a class="button" href="{}">Add credit</a>', url)


class LedgerEntryInline(ReadOnlyAdminMixin, LedgerColumnsMixin, admin.TabularInline):
    model = LedgerEntry
    fk_name = "org"
    verbose_name_plural = f"ledger (newest {INLINE_ENTRIES} entries first)"
    extra = 0
    show_change_link = True

    def get_fields(self, request, obj=None):
        fields = ["created_at", "type", "amount", "balance_after", "description", "by", "reverses"]
        if request.user.has_perm(REFUND_PERMISSION):
            fields.append("refund_link")
        return fields

    def get_readonly_fields(self, request, obj=None):
        return self.get_fields(request, obj)

    def get_queryset(self, request):
        newest = LedgerEntry.objects.filter(
            sequence__gt=F("wallet__last_sequence") - INLINE_ENTRIES
        ).order_by("-sequence")
        return _with_refunded(newest)


class MoneyFormViewMixin:
    """Renders the refund and credit forms in the admin's look."""

    money_form_template = "admin/billing/money_form.html"

    def render_money_form(self, request, *, form, original, title, summary, submit_label):
        request.current_app = self.admin_site.name
        context = {
            **self.admin_site.each_context(request),
            "title": title,
            "summary": summary,
            "submit_label": submit_label,
            "form": form,
            "opts": self.opts,
            "original": original,
            "media": self.media + form.media,
        }
        return TemplateResponse(request, self.money_form_template, context)


@admin.register(LedgerEntry)
class LedgerEntryAdmin(
    ReadOnlyAdminMixin, LedgerColumnsMixin, MoneyFormViewMixin, admin.ModelAdmin
):
    list_display = ["created_at", "org", "type", "amount", "balance_after", "description", "by"]
    list_filter = ["type"]
    search_fields = ["org__clinic_name", "=org__id", "=id", "idempotency_key", "description"]
    list_select_related = ["org", "created_by"]
    fields = [
        "id",
        "org",
        "wallet",
        "sequence",
        "type",
        "amount",
        "balance_after",
        "description",
        "reverses",
        "idempotency_key",
        "by",
        "created_at",
    ]
    readonly_fields = fields
    change_form_template = "admin/billing/ledgerentry/change_form.html"

    def get_queryset(self, request):
        return _with_refunded(super().get_queryset(request))

    def get_urls(self):
        return [
            path(
                "<path:object_id>/refund/",
                self.admin_site.admin_view(self.issue_refund_view),
                name="billing_ledgerentry_refund",
            ),
            *super().get_urls(),
        ]

    def change_view(self, request, object_id, form_url="", extra_context=None):
        extra_context = dict(extra_context or {})
        entry = self.get_object(request, unquote(object_id))
        if entry is not None and request.user.has_perm(REFUND_PERMISSION):
            extra_context["refund_link"] = _refund_link(entry)
        return super().change_view(request, object_id, form_url, extra_context)

    @csrf_protect_m
    def issue_refund_view(self, request, object_id):
        if not request.user.has_perm(REFUND_PERMISSION):
            raise PermissionDenied
        entry = self.get_object(request, unquote(object_id))
        if entry is None:
            raise Http404("No ledger entry with this id.")
        if entry.amount_pence >= 0:
            messages.error(request, "Only a charge can be refunded.")
            return HttpResponseRedirect(
                reverse("admin:billing_ledgerentry_change", args=[entry.pk])
            )
        remainder = services.refundable_remainder(entry)
        if request.method == "POST":
            form = RefundForm(request.POST)
            if form.is_valid():
                data = form.cleaned_data
                try:
                    posting = services.post_refund(
                        entry=entry,
                        amount_pence=data["amount"],
                        reason=data["reason"],
                        idempotency_key=f"admin-refund:{data['nonce']}",
                        created_by=request.user,
                    )
                except services.IdempotencyKeyReused:
                    form.add_error(
                        None,
                        "This form was already submitted with a different amount. "
                        "Reload the refund page to issue another refund.",
                    )
                except services.RefundRefused as exc:
                    form.add_error(None, exc.message)
                else:
                    refund = posting.entry
                    if posting.created:
                        change = (
                            f"Refunded {format_pence(refund.amount_pence)} of "
                            f"{entry.get_type_display().lower()} charge {entry.pk} "
                            f"(entry {refund.pk}). Reason: {refund.description}"
                        )
                        self.log_change(request, entry.org, change)
                        messages.success(request, change)
                    else:
                        messages.warning(
                            request,
                            f"This refund of {format_pence(refund.amount_pence)} was already "
                            "issued (the form was submitted twice). Nothing more was refunded.",
                        )
                    return HttpResponseRedirect(_org_url(entry.org_id))
        else:
            form = RefundForm(initial={"amount": pounds(remainder), "nonce": uuid.uuid4()})
        return self.render_money_form(
            request,
            form=form,
            original=entry,
            title=f"Refund {entry.get_type_display().lower()} charge",
            summary=(
                f"{entry.org}: charge of {format_pence(-entry.amount_pence)} on "
                f"{entry.created_at:%d %b %Y %H:%M}, {format_pence(remainder)} still refundable."
            ),
            submit_label="Issue refund",
        )


@admin.register(Wallet)
class WalletAdmin(ReadOnlyAdminMixin, MoneyFormViewMixin, admin.ModelAdmin):
    list_display = ["org", "balance", "last_sequence", "updated_at"]
    search_fields = ["org__clinic_name", "=org__id"]
    list_select_related = ["org"]
    fields = ["id", "org", "balance", "last_sequence", "created_at", "updated_at"]
    readonly_fields = fields
    change_form_template = "admin/billing/wallet/change_form.html"

    @admin.display(description="balance", ordering="balance_pence")
    def balance(self, wallet: Wallet) -> str:
        return wallet.balance_formatted

    def get_urls(self):
        return [
            path(
                "<path:object_id>/credit/",
                self.admin_site.admin_view(self.add_credit_view),
                name="billing_wallet_credit",
            ),
            *super().get_urls(),
        ]

    def change_view(self, request, object_id, form_url="", extra_context=None):
        extra_context = dict(extra_context or {})
        if request.user.has_perm(CREDIT_PERMISSION):
            extra_context["credit_url"] = reverse("admin:billing_wallet_credit", args=[object_id])
        return super().change_view(request, object_id, form_url, extra_context)

    @csrf_protect_m
    def add_credit_view(self, request, object_id):
        if not request.user.has_perm(CREDIT_PERMISSION):
            raise PermissionDenied
        wallet = self.get_object(request, unquote(object_id))
        if wallet is None:
            raise Http404("No wallet with this id.")
        if request.method == "POST":
            form = CreditForm(request.POST)
            if form.is_valid():
                data = form.cleaned_data
                try:
                    posting = services.post_credit(
                        org=wallet.org_id,
                        amount_pence=data["amount"],
                        type=data["type"],
                        description=data["reason"],
                        idempotency_key=f"admin-credit:{data['nonce']}",
                        created_by=request.user,
                    )
                except services.IdempotencyKeyReused:
                    form.add_error(
                        None,
                        "This form was already submitted with different details. "
                        "Reload the credit page to add more credit.",
                    )
                else:
                    credit = posting.entry
                    if posting.created:
                        change = (
                            f"Added {format_pence(credit.amount_pence)} "
                            f"({credit.get_type_display().lower()}, entry {credit.pk}). "
                            f"Reason: {credit.description}"
                        )
                        self.log_change(request, wallet.org, change)
                        messages.success(request, change)
                    else:
                        messages.warning(
                            request,
                            f"This credit of {format_pence(credit.amount_pence)} was already "
                            "added (the form was submitted twice). Nothing more was added.",
                        )
                    return HttpResponseRedirect(_org_url(wallet.org_id))
        else:
            form = CreditForm(initial={"nonce": uuid.uuid4()})
        return self.render_money_form(
            request,
            form=form,
            original=wallet,
            title="Add credit",
            summary=f"{wallet.org}: balance {wallet.balance_formatted}.",
            submit_label="Add credit",
        )


add_organization_inline(WalletInline)
add_organization_inline(LedgerEntryInline)


# --- Auto-recharge: what support sees (read-only; the clinic changes its own settings) -----


class AutoRechargeInline(ReadOnlyAdminMixin, admin.StackedInline):
    model = AutoRecharge
    verbose_name_plural = "auto-recharge"
    can_delete = False
    extra = 0
    max_num = 1
    fields = [
        "enabled",
        "threshold_pence",
        "amount_pence",
        "paused_reason",
        "paused_at",
        "stripe_customer_id",
        "stripe_payment_method_id",
        "updated_at",
    ]
    readonly_fields = fields


class RechargeAttemptInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = RechargeAttempt
    verbose_name_plural = "auto-recharge attempts (newest first)"
    extra = 0
    ordering = ["-created_at"]
    fields = [
        "created_at",
        "state",
        "amount_pence",
        "payment_intent_id",
        "error_code",
        "error_detail",
        "finished_at",
    ]
    readonly_fields = fields


@admin.register(RechargeAttempt)
class RechargeAttemptAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["created_at", "org", "state", "amount_pence", "error_code", "payment_intent_id"]
    list_filter = ["state", "error_code"]
    search_fields = ["org__clinic_name", "=org__id", "payment_intent_id"]
    list_select_related = ["org"]


add_organization_inline(AutoRechargeInline)
add_organization_inline(RechargeAttemptInline)
