"""Support's wallet screens: the clinic's balance and ledger, refunds, manual credit, refunds
of top-ups to the card, and unfreezing a wallet on hold.

Ledger entries, wallets and top-ups are view-only here. Money moves only through the custom
views, each shaped like Django's UserAdmin.user_change_password: permission check, form, one service
call, a `log_change` entry on the clinic, a message, a redirect.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.db.models import F, OuterRef, Subquery, Sum
from django.db.models.functions import Coalesce
from django.http import Http404, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.decorators import method_decorator
from django.utils.html import format_html
from django.views.decorators.csrf import csrf_protect

from billing import services, topups
from billing.forms import CardRefundForm, CreditForm, RefundForm, UnfreezeForm, pounds
from billing.models import (
    BACK_TO_CARD_TYPES,
    SUPPORT_DESCRIPTIONS,
    AutoRecharge,
    Dispute,
    DisputeStatus,
    EntryType,
    LedgerEntry,
    RechargeAttempt,
    TopUp,
    Wallet,
    WebhookEvent,
    format_pence,
)
from voxanne.admin import ReadOnlyAdminMixin, add_organization_inline
from voxanne.errors import IdempotencyKeyReused

REFUND_PERMISSION = "billing.issue_refund"
CREDIT_PERMISSION = "billing.add_credit"
CARD_REFUND_PERMISSION = "billing.refund_to_card"
UNFREEZE_PERMISSION = "billing.unfreeze_wallet"
# The same rendered refund form submitted again with another amount (its nonce is spent).
RESUBMITTED_REFUND = (
    "This form was already submitted with a different amount. "
    "Reload the refund page to issue another refund."
)
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
    if entry.amount_pence >= 0 or entry.type in BACK_TO_CARD_TYPES:
        return ""  # a credit, or money that went back to the card: nothing to give back
    left = -entry.amount_pence - getattr(entry, "refunded_pence", 0)
    if left <= 0:
        return "Refunded in full"
    url = reverse("admin:billing_ledgerentry_refund", args=[entry.pk])
    return format_html('<a class="button" href="{}">Issue refund</a>', url)


def _hold_summary(wallet: Wallet) -> str:
    if wallet.frozen_at is None:
        return "No"
    return f"Frozen since {wallet.frozen_at:%d %b %Y %H:%M}: {wallet.frozen_reason}"


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
        fields = ["balance", "on_hold", "ledger"]
        if request.user.has_perm(CREDIT_PERMISSION):
            fields.append("add_credit")
        if request.user.has_perm(UNFREEZE_PERMISSION):
            fields.append("unfreeze")
        return fields

    def get_readonly_fields(self, request, obj=None):
        return self.get_fields(request, obj)

    @admin.display(description="balance")
    def balance(self, wallet: Wallet) -> str:
        return wallet.balance_formatted

    @admin.display(description="on hold")
    def on_hold(self, wallet: Wallet) -> str:
        return _hold_summary(wallet)

    @admin.display(description="unfreeze")
    def unfreeze(self, wallet: Wallet) -> str:
        if wallet.frozen_at is None:
            return "-"
        url = reverse("admin:billing_wallet_unfreeze", args=[wallet.pk])
        return format_html('<a class="button" href="{}">Unfreeze</a>', url)

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
        fields = [
            "created_at",
            "type",
            "amount",
            "balance_after",
            "description",
            "internal_note",
            "by",
            "reverses",
        ]
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
    """The steps the money screens share; each view brings its form, its one service call and
    its messages.

    A money form carries a nonce made when it is first rendered, and the service's idempotency
    key is built from it: the same rendered form submitted twice moves money once.
    """

    money_form_template = "admin/billing/money_form.html"
    # (route below the object's URL, view method, URL name) of each money screen
    money_views: list[tuple[str, str, str]] = []

    def get_urls(self):
        screens = [
            path(
                f"<path:object_id>/{route}/",
                self.admin_site.admin_view(getattr(self, view)),
                name=name,
            )
            for route, view, name in self.money_views
        ]
        return [*screens, *super().get_urls()]

    def get_money_object(self, request, object_id, *, permission: str):
        """The object the screen acts on. Raises PermissionDenied without `permission`, Http404
        when there is no such object."""
        if not request.user.has_perm(permission):
            raise PermissionDenied
        obj = self.get_object(request, unquote(object_id))
        if obj is None:
            raise Http404(f"No {self.opts.verbose_name} with this id.")
        return obj

    def submit_money_form(
        self,
        request,
        form_class,
        *,
        initial: Callable[[], dict],
        move_money: Callable[[dict], Any],
        outcome: Callable[[Any, Any], HttpResponse | None],
        resubmitted: str,
        refused: type[Exception] | tuple[type[Exception], ...] = (),
    ):
        """(form, response). Not a POST: a new form with `initial()` and a fresh nonce, and no
        response. A valid POST: `move_money(cleaned_data)` is the one service call, and
        `outcome(result, form)` writes the audit entry and message and returns the redirect (or
        None to show the form again). A nonce reused with other details shows `resubmitted` on
        the form, a `refused` exception its own message."""
        if request.method != "POST":
            return form_class(initial={**initial(), "nonce": uuid.uuid4()}), None
        form = form_class(request.POST)
        if form.is_valid():
            try:
                result = move_money(form.cleaned_data)
            except IdempotencyKeyReused:
                form.add_error(None, resubmitted)
            except refused as exc:
                form.add_error(None, exc.message)
            else:
                return form, outcome(result, form)
        return form, None

    def report_money_moved(self, request, org, *, created: bool, change: str, repeated: str):
        """Money moved: the `change` as an audit entry on the clinic and a success message. The
        same form submitted again (nothing moved): the `repeated` warning."""
        if created:
            self.log_change(request, org, change)
            messages.success(request, change)
        else:
            messages.warning(request, repeated)

    def render_money_form(self, request, *, form, original, title, summary, submit_label):
        """The refund and credit forms in the admin's look."""
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
    list_display = [
        "created_at",
        "org",
        "type",
        "amount",
        "balance_after",
        "description",
        "internal_note",
        "by",
    ]
    list_filter = ["type"]
    search_fields = [
        "org__clinic_name",
        "=org__id",
        "=id",
        "idempotency_key",
        "description",
        "internal_note",
    ]
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
        "internal_note",
        "reverses",
        "idempotency_key",
        "by",
        "created_at",
    ]
    readonly_fields = fields
    change_form_template = "admin/billing/ledgerentry/change_form.html"
    money_views = [("refund", "issue_refund_view", "billing_ledgerentry_refund")]

    def get_queryset(self, request):
        return _with_refunded(super().get_queryset(request))

    def change_view(self, request, object_id, form_url="", extra_context=None):
        extra_context = dict(extra_context or {})
        entry = self.get_object(request, unquote(object_id))
        if entry is not None and request.user.has_perm(REFUND_PERMISSION):
            extra_context["refund_link"] = _refund_link(entry)
        return super().change_view(request, object_id, form_url, extra_context)

    @csrf_protect_m
    def issue_refund_view(self, request, object_id):
        entry = self.get_money_object(request, object_id, permission=REFUND_PERMISSION)
        if entry.amount_pence >= 0:
            messages.error(request, "Only a charge can be refunded.")
            return HttpResponseRedirect(
                reverse("admin:billing_ledgerentry_change", args=[entry.pk])
            )
        remainder = services.refundable_remainder(entry)

        def refund(data):
            return services.refund(
                entry=entry,
                amount_pence=data["amount"],
                reason=SUPPORT_DESCRIPTIONS[EntryType.REFUND],
                internal_note=data["reason"],
                idempotency_key=f"admin-refund:{data['nonce']}",
                created_by=request.user,
            )

        def refunded(posting, form):
            refund = posting.entry
            self.report_money_moved(
                request,
                entry.org,
                created=posting.created,
                change=(
                    f"Refunded {format_pence(refund.amount_pence)} of "
                    f"{entry.get_type_display().lower()} charge {entry.pk} "
                    f"(entry {refund.pk}). Reason: {refund.internal_note}"
                ),
                repeated=(
                    f"This refund of {format_pence(refund.amount_pence)} was already "
                    "issued (the form was submitted twice). Nothing more was refunded."
                ),
            )
            return HttpResponseRedirect(_org_url(entry.org_id))

        form, response = self.submit_money_form(
            request,
            RefundForm,
            initial=lambda: {"amount": pounds(remainder)},
            move_money=refund,
            outcome=refunded,
            resubmitted=RESUBMITTED_REFUND,
            refused=services.RefundRefused,
        )
        if response is not None:
            return response
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
    list_display = ["org", "balance", "last_sequence", "frozen_at", "updated_at"]
    list_filter = [("frozen_at", admin.EmptyFieldListFilter)]
    search_fields = ["org__clinic_name", "=org__id"]
    list_select_related = ["org"]
    fields = [
        "id",
        "org",
        "balance",
        "last_sequence",
        "frozen_at",
        "frozen_reason",
        "created_at",
        "updated_at",
    ]
    readonly_fields = fields
    change_form_template = "admin/billing/wallet/change_form.html"
    money_views = [
        ("credit", "add_credit_view", "billing_wallet_credit"),
        ("unfreeze", "unfreeze_view", "billing_wallet_unfreeze"),
    ]

    @admin.display(description="balance", ordering="balance_pence")
    def balance(self, wallet: Wallet) -> str:
        return wallet.balance_formatted

    def change_view(self, request, object_id, form_url="", extra_context=None):
        extra_context = dict(extra_context or {})
        if request.user.has_perm(CREDIT_PERMISSION):
            extra_context["credit_url"] = reverse("admin:billing_wallet_credit", args=[object_id])
        wallet = self.get_object(request, unquote(object_id))
        if wallet is not None and wallet.frozen_at and request.user.has_perm(UNFREEZE_PERMISSION):
            extra_context["unfreeze_url"] = reverse(
                "admin:billing_wallet_unfreeze", args=[object_id]
            )
        return super().change_view(request, object_id, form_url, extra_context)

    @csrf_protect_m
    def unfreeze_view(self, request, object_id):
        wallet = self.get_money_object(request, object_id, permission=UNFREEZE_PERMISSION)
        if request.method == "POST":
            form = UnfreezeForm(request.POST)
            if form.is_valid():
                reason = form.cleaned_data["reason"]
                lifted = services.unfreeze_by_support(org=wallet.org_id, reason=reason)
                if lifted is None:
                    messages.warning(request, "This wallet was not frozen. Nothing changed.")
                else:
                    change = f"Unfroze the wallet (frozen for: {lifted}). Reason: {reason}"
                    self.log_change(request, wallet.org, change)
                    messages.success(request, change)
                return HttpResponseRedirect(_org_url(wallet.org_id))
        else:
            form = UnfreezeForm()
        open_disputes = Dispute.objects.filter(
            org_id=wallet.org_id, status=DisputeStatus.OPEN
        ).count()
        summary = f"{wallet.org}: balance {wallet.balance_formatted}. " + (
            f"Frozen since {wallet.frozen_at:%d %b %Y %H:%M}: {wallet.frozen_reason}"
            if wallet.frozen_at
            else "Not frozen."
        )
        if open_disputes:
            summary += (
                f" {open_disputes} payment dispute(s) still open: if one is lost, the wallet "
                "is frozen again."
            )
        return self.render_money_form(
            request,
            form=form,
            original=wallet,
            title="Unfreeze wallet",
            summary=summary,
            submit_label="Unfreeze",
        )

    @csrf_protect_m
    def add_credit_view(self, request, object_id):
        wallet = self.get_money_object(request, object_id, permission=CREDIT_PERMISSION)

        def add_credit(data):
            return services.credit(
                org=wallet.org_id,
                amount_pence=data["amount"],
                type=data["type"],
                description=SUPPORT_DESCRIPTIONS[data["type"]],
                internal_note=data["reason"],
                idempotency_key=f"admin-credit:{data['nonce']}",
                created_by=request.user,
            )

        def added(posting, form):
            credit = posting.entry
            self.report_money_moved(
                request,
                wallet.org,
                created=posting.created,
                change=(
                    f"Added {format_pence(credit.amount_pence)} "
                    f"({credit.get_type_display().lower()}, entry {credit.pk}). "
                    f"Reason: {credit.internal_note}"
                ),
                repeated=(
                    f"This credit of {format_pence(credit.amount_pence)} was already "
                    "added (the form was submitted twice). Nothing more was added."
                ),
            )
            return HttpResponseRedirect(_org_url(wallet.org_id))

        form, response = self.submit_money_form(
            request,
            CreditForm,
            initial=dict,
            move_money=add_credit,
            outcome=added,
            resubmitted=(
                "This form was already submitted with different details. "
                "Reload the credit page to add more credit."
            ),
        )
        if response is not None:
            return response
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


# --- Stripe: top-ups, disputes, the webhook inbox (view-only; billing/topups.py writes them) --


@admin.register(TopUp)
class TopUpAdmin(ReadOnlyAdminMixin, MoneyFormViewMixin, admin.ModelAdmin):
    list_display = ["org", "amount", "status", "refunded", "stripe_session_id", "created_at"]
    list_filter = ["status"]
    search_fields = [
        "org__clinic_name",
        "=org__id",
        "=stripe_session_id",
        "=payment_intent_id",
        "=charge_id",
    ]
    list_select_related = ["org"]
    readonly_fields = [f.name for f in TopUp._meta.fields]
    change_form_template = "admin/billing/topup/change_form.html"
    money_views = [("refund-to-card", "refund_to_card_view", "billing_topup_refund_to_card")]

    def change_view(self, request, object_id, form_url="", extra_context=None):
        extra_context = dict(extra_context or {})
        topup = self.get_object(request, unquote(object_id))
        if (
            topup is not None
            and topup.status in topups.REFUNDABLE_STATUSES
            and request.user.has_perm(CARD_REFUND_PERMISSION)
        ):
            extra_context["refund_to_card_url"] = reverse(
                "admin:billing_topup_refund_to_card", args=[topup.pk]
            )
        return super().change_view(request, object_id, form_url, extra_context)

    @csrf_protect_m
    def refund_to_card_view(self, request, object_id):
        topup = self.get_money_object(request, object_id, permission=CARD_REFUND_PERMISSION)

        def refund_to_card(data):
            return topups.refund_topup_to_card(
                topup=topup,
                amount_pence=data["amount"],
                reason=data["reason"],
                nonce=data["nonce"],
                created_by=request.user,
            )

        form, response = self.submit_money_form(
            request,
            CardRefundForm,
            initial=lambda: {"amount": pounds(self._unspent(topup))},
            move_money=refund_to_card,
            outcome=lambda result, form: self._card_refund_outcome(request, topup, form, result),
            resubmitted=RESUBMITTED_REFUND,
            refused=topups.CardRefundRefused,
        )
        if response is not None:
            return response
        paid = format_pence(topup.paid_pence or topup.amount_pence)
        return self.render_money_form(
            request,
            form=form,
            original=topup,
            title="Refund top-up to the card",
            summary=(
                f"{topup.org}: top-up of {paid} ({topup.get_status_display()}), "
                f"{format_pence(topup.refunded_pence)} refunded at Stripe so far, "
                f"{format_pence(self._unspent(topup))} unspent (what is left of it after "
                "refunds, and no more than the wallet holds)."
            ),
            submit_label="Refund to card",
        )

    @staticmethod
    def _unspent(topup: TopUp) -> int:
        return topups.unspent_pence(topup, services.wallet_for(topup.org_id).balance_pence)

    def _card_refund_outcome(self, request, topup, form, result):
        """The message for what happened; None to show the form again (Stripe did not answer)."""
        amount = format_pence(-result.debit.amount_pence)
        if result.reversal is not None:
            if result.created:
                self.log_change(
                    request,
                    topup.org,
                    f"Refund to card of {amount} (top-up {topup.pk}) refused by Stripe and "
                    f"reversed (entries {result.debit.pk}, {result.reversal.pk}).",
                )
            messages.error(
                request,
                f"Stripe refused the refund of {amount}: {result.problem}. The wallet was "
                "debited and credited back; nothing left the account.",
            )
            return HttpResponseRedirect(_org_url(topup.org_id))
        if result.refund is None:
            form.add_error(
                None,
                f"Stripe did not answer ({result.problem}). The wallet has been debited "
                f"{amount}: submit this same form again to finish the refund.",
            )
            return None
        self.report_money_moved(
            request,
            topup.org,
            created=result.created,
            change=(
                f"Refunded {amount} of top-up {topup.pk} to the card (Stripe {result.refund.id}, "
                f"entry {result.debit.pk}). Reason: {form.cleaned_data['reason']}"
            ),
            repeated=(
                f"This refund of {amount} to the card was already issued (the form was "
                "submitted twice). Nothing more was refunded."
            ),
        )
        return HttpResponseRedirect(_org_url(topup.org_id))

    @admin.display(description="amount", ordering="amount_pence")
    def amount(self, topup: TopUp) -> str:
        return format_pence(topup.paid_pence or topup.amount_pence)

    @admin.display(description="refunded", ordering="refunded_pence")
    def refunded(self, topup: TopUp) -> str:
        return format_pence(topup.refunded_pence)


@admin.register(Dispute)
class DisputeAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["org", "stripe_dispute_id", "amount_pence", "status", "created_at"]
    list_filter = ["status"]
    search_fields = ["org__clinic_name", "=stripe_dispute_id"]
    list_select_related = ["org"]
    readonly_fields = [f.name for f in Dispute._meta.fields]


@admin.register(WebhookEvent)
class WebhookEventAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["provider", "type", "event_id", "outcome", "received_at"]
    list_filter = ["provider", "outcome", "type"]
    search_fields = ["=event_id"]
    readonly_fields = [f.name for f in WebhookEvent._meta.fields]


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
