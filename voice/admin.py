"""Support staff's admin for clinics' voice agents and calls.

On the clinic's page: its agent (with its Vapi ids) and its newest calls, each with its charge
and a link to the existing refund screen for it. Calls and agents are view-only here: calls
are written by the webhook and the reconciler, agents by the clinic through the API.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib import admin, messages
from django.urls import reverse
from django.utils.html import format_html

from billing.models import format_pence
from voice import services, vapi
from voice.models import Agent, Call
from voxanne.admin import ReadOnlyAdminMixin, add_organization_inline

INLINE_CALLS = 50
REFUND_PERMISSION = "billing.issue_refund"


class CallColumnsMixin:
    @admin.display(description="cost", ordering="cost_pence")
    def cost(self, call: Call) -> str:
        return format_pence(call.cost_pence)

    @admin.display(description="charge")
    def charge_link(self, call: Call) -> str:
        if call.charge_id is None:
            return "-"
        entry = reverse("admin:billing_ledgerentry_change", args=[call.charge_id])
        refund = reverse("admin:billing_ledgerentry_refund", args=[call.charge_id])
        return format_html(
            '<a href="{}">ledger entry</a> · <a class="button" href="{}">Refund this call</a>',
            entry,
            refund,
        )


@admin.register(Agent)
class AgentAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["name", "org", "status", "vapi_assistant_id", "is_active", "created_at"]
    list_filter = ["status", "is_active"]
    search_fields = ["name", "org__clinic_name", "vapi_assistant_id"]
    readonly_fields = ["vapi_name"]
    actions = ["place_sandbox_call"]

    @admin.display(description="Vapi assistant name")
    def vapi_name(self, agent: Agent) -> str:
        return agent.vapi_name

    def get_actions(self, request):
        actions = super().get_actions(request)
        if not settings.TELEPHONY_SANDBOX:
            actions.pop("place_sandbox_call", None)
        return actions

    @admin.action(description="Place a 90-second sandbox call to the clinic's number")
    def place_sandbox_call(self, request, queryset):
        for agent in queryset.select_related("org"):
            try:
                placed = services.place_sandbox_call(
                    org=agent.org, seconds=90, caller="+447700900123"
                )
            except (services.SandboxOnly, ValueError) as exc:
                self.message_user(request, f"{agent.org}: {exc}", messages.ERROR)
                continue
            except vapi.VapiError as exc:
                self.message_user(request, f"{agent.org}: {exc.detail}", messages.ERROR)
                continue
            if placed.call is None:
                spoken = (placed.answer.get("assistantRequest") or [None, {}])[1]
                self.message_user(
                    request, f"{agent.org}: the call was not taken: {spoken}", messages.WARNING
                )
                continue
            self.message_user(
                request,
                f"{agent.org}: a {placed.call.duration_seconds} s call was billed "
                f"{format_pence(placed.call.cost_pence)}; the balance is now "
                f"{format_pence(placed.balance_pence)}.",
            )


@admin.register(Call)
class CallAdmin(ReadOnlyAdminMixin, CallColumnsMixin, admin.ModelAdmin):
    list_display = [
        "started_at",
        "org",
        "caller_number",
        "duration_seconds",
        "cost",
        "ended_reason",
        "vapi_call_id",
        "charge_link",
    ]
    list_filter = ["direction", "ended_reason"]
    search_fields = ["vapi_call_id", "caller_number", "org__clinic_name", "org__id"]
    date_hierarchy = "started_at"
    list_select_related = ["org"]


class AgentInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = Agent
    extra = 0
    fields = ["name", "status", "is_active", "vapi_assistant_id", "vapi_name", "created_at"]
    readonly_fields = fields

    @admin.display(description="Vapi assistant name")
    def vapi_name(self, agent: Agent) -> str:
        return agent.vapi_name


class CallInline(ReadOnlyAdminMixin, CallColumnsMixin, admin.TabularInline):
    model = Call
    extra = 0
    verbose_name_plural = f"calls (newest {INLINE_CALLS} first)"
    show_change_link = True

    def get_fields(self, request, obj=None):
        fields = ["started_at", "caller_number", "duration_seconds", "cost", "ended_reason"]
        fields.append("vapi_call_id")
        if request.user.has_perm(REFUND_PERMISSION):
            fields.append("charge_link")
        return fields

    def get_readonly_fields(self, request, obj=None):
        return self.get_fields(request, obj)

    def get_queryset(self, request):
        queryset = super().get_queryset(request).order_by("-started_at")
        org_id = request.resolver_match.kwargs.get("object_id") if request.resolver_match else None
        if org_id:  # the newest only: an inline cannot be sliced after Django filters it
            newest = queryset.filter(org_id=org_id).values("pk")[:INLINE_CALLS]
            queryset = queryset.filter(pk__in=newest)
        return queryset


add_organization_inline(AgentInline)
add_organization_inline(CallInline)
