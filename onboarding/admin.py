"""Onboarding's panels on the clinic page (attached through voxanne.admin's hooks)."""

from __future__ import annotations

from datetime import datetime

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.decorators import method_decorator
from django.utils.html import format_html, format_html_join
from django.views.decorators.csrf import csrf_protect

from onboarding import reconciler, rental, services
from onboarding.models import (
    ACTIVE_ATTEMPT_STATES,
    ManagedPhoneNumber,
    OnboardingEvent,
    ProvisioningAttempt,
    TwilioSubaccount,
)
from voxanne.admin import ReadOnlyAdminMixin, add_organization_filter, add_organization_inline


class OnboardingEventInline(ReadOnlyAdminMixin, admin.TabularInline):
    """The clinic's wizard events, newest first. Telemetry is evidence: nobody edits it."""

    model = OnboardingEvent
    fields = ["created_at", "event_name", "step_index", "user", "session_id", "metadata"]
    readonly_fields = fields
    ordering = ["-created_at"]
    extra = 0
    can_delete = False
    verbose_name_plural = "onboarding events (newest first)"

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("user")


class OnboardingCompletedFilter(admin.SimpleListFilter):
    title = "onboarding completed"
    parameter_name = "onboarding_completed"

    def lookups(self, request, model_admin):
        return [("yes", "Yes"), ("no", "No")]

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return queryset.filter(onboarding_completed_at__isnull=False)
        if self.value() == "no":
            return queryset.filter(onboarding_completed_at__isnull=True)
        return queryset


class PaymentStepFilter(admin.SimpleListFilter):
    title = "payment step"
    parameter_name = "payment"

    def lookups(self, request, model_admin):
        return [("viewed_not_paid", "Viewed payment but not paid")]

    def queryset(self, request, queryset):
        if self.value() == "viewed_not_paid":
            return services.payment_abandonment(queryset).filter(viewed_payment_but_not_paid=True)
        return queryset


add_organization_inline(OnboardingEventInline)
add_organization_filter(OnboardingCompletedFilter)
add_organization_filter(PaymentStepFilter)


# --- Paid phone-number provisioning: read-only, plus "run the reconciler for this attempt" ---

EXTEND_GRACE_PERMISSION = "onboarding.extend_grace"
csrf_protect_m = method_decorator(csrf_protect)


class GraceFilter(admin.SimpleListFilter):
    title = "rental"
    parameter_name = "rental"

    def lookups(self, request, model_admin):
        return [("grace", "In grace (renewal unpaid)"), ("paid", "Paid")]

    def queryset(self, request, queryset):
        active = queryset.filter(status=ManagedPhoneNumber.Status.ACTIVE)
        if self.value() == "grace":
            return active.filter(grace_until__isnull=False)
        if self.value() == "paid":
            return active.filter(grace_until__isnull=True)
        return queryset


class ExtendGraceForm(forms.Form):
    """Support gives a clinic in grace more days before its number is released."""

    days = forms.IntegerField(min_value=1, max_value=60, label="Extra days")
    reason = forms.CharField(
        max_length=500,
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
        help_text="Why. Kept on the number and in the clinic's history.",
    )
    confirm = forms.BooleanField(required=True, label="I confirm this extension")
    # The grace end the form was opened on, exactly (ISO-8601): a double submit extends once.
    seen_grace_until = forms.CharField(widget=forms.HiddenInput)

    def clean_seen_grace_until(self) -> datetime:
        try:
            return datetime.fromisoformat(self.cleaned_data["seen_grace_until"])
        except ValueError:
            raise forms.ValidationError("Reload the page and try again.") from None

    def clean_reason(self) -> str:
        reason = self.cleaned_data["reason"].strip()
        if not reason:
            raise forms.ValidationError("Give a reason.")
        return reason


ATTEMPT_FIELDS = [
    "id",
    "org",
    "state",
    "idempotency_key",
    "area_code",
    "phone_number",
    "created_at",
    "subaccount_at",
    "purchased_at",
    "imported_at",
    "finished_at",
    "refunded_at",
    "reconciled_at",
    "lease_expires_at",
    "subaccount_sid",
    "twilio_number_sid",
    "vapi_phone_id",
    "hold",
    "error_code",
    "error_detail",
    "response_status",
    "response_body",
]


@admin.register(ProvisioningAttempt)
class ProvisioningAttemptAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["__str__", "org", "state", "phone_number", "error_code", "created_at"]
    list_filter = ["state"]
    search_fields = ["id", "org__clinic_name", "phone_number", "twilio_number_sid"]
    list_select_related = ["org"]
    fields = ATTEMPT_FIELDS
    readonly_fields = ATTEMPT_FIELDS
    actions = ["run_reconciler"]

    @admin.action(
        description="Run the reconciler for the selected attempts",
        permissions=["reconcile"],
    )
    def run_reconciler(self, request, queryset):
        for attempt in queryset:
            result = reconciler.reconcile_attempt(attempt_id=attempt.pk)
            if result is None:
                attempt.refresh_from_db()
                if attempt.state in ACTIVE_ATTEMPT_STATES:
                    text = (
                        f"{attempt}: still being driven until {attempt.lease_expires_at:%H:%M:%S}."
                    )
                else:
                    text = f"{attempt}: already ended ({attempt.get_state_display()})."
                self.message_user(request, text, messages.WARNING)
                continue
            self.log_change(request, attempt, f"Reconciler run: {result.outcome}")
            self.message_user(request, f"{attempt}: {result.outcome.replace('_', ' ')}.")

    def has_reconcile_permission(self, request) -> bool:
        return request.user.has_perm("onboarding.view_provisioningattempt") and (
            request.user.is_superuser or request.user.has_perm("billing.issue_refund")
        )


@admin.register(ManagedPhoneNumber)
class ManagedPhoneNumberAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["phone_number", "org", "status", "next_renewal", "grace", "created_at"]
    list_filter = ["status", GraceFilter]
    search_fields = ["phone_number", "org__clinic_name", "twilio_number_sid"]
    list_select_related = ["org"]
    fields = [
        "id",
        "org",
        "phone_number",
        "status",
        "next_renewal",
        "grace",
        "grace_extended_reason",
        "months_paid",
        "rental_started_at",
        "released_at",
        "provider_released_at",
        "rental_history",
        "twilio_number_sid",
        "subaccount_sid",
        "vapi_phone_id",
        "attempt",
        "created_at",
        "updated_at",
    ]
    readonly_fields = fields

    @admin.display(description="next renewal", ordering="paid_until")
    def next_renewal(self, number: ManagedPhoneNumber) -> str:
        if number.status == ManagedPhoneNumber.Status.RELEASED:
            return "none (released)"
        return f"{number.paid_until:%d %b %Y %H:%M} UTC"

    @admin.display(description="grace")
    def grace(self, number: ManagedPhoneNumber) -> str:
        if number.grace_until is None:
            return "-"
        if number.status == ManagedPhoneNumber.Status.RELEASED:
            return f"ran out {number.grace_until:%d %b %Y %H:%M} UTC"
        return f"unpaid: released at {number.grace_until:%d %b %Y %H:%M} UTC"

    @admin.display(description="rental history")
    def rental_history(self, number: ManagedPhoneNumber) -> str:
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (
                    f"{e.created_at:%d %b %Y}",
                    e.get_type_display(),
                    e.amount_formatted,
                    e.description,
                )
                for e in rental.rental_history(number)[:36]
            ),
        )
        notices = format_html_join(
            "",
            "<li>{}: {} ({})</li>",
            (
                (f"{n.claimed_at:%d %b %Y}", n.get_kind_display(), n.state)
                for n in number.notices.all()[:20]
            ),
        )
        return format_html(
            "<table><tr><th>date</th><th>kind</th><th>amount</th><th>what</th></tr>{}</table>"
            "<p>Emails:</p><ul>{}</ul>",
            rows or format_html("<tr><td colspan=4>{}</td></tr>", "first month paid"),
            notices or format_html("<li>{}</li>", "none"),
        )

    def get_urls(self):
        return [
            path(
                "<path:object_id>/extend-grace/",
                self.admin_site.admin_view(self.extend_grace_view),
                name="onboarding_managedphonenumber_extend_grace",
            ),
            *super().get_urls(),
        ]

    def change_view(self, request, object_id, form_url="", extra_context=None):
        extra_context = dict(extra_context or {})
        number = self.get_object(request, unquote(object_id))
        if number is not None and number.rental_status == "grace":
            if request.user.has_perm(EXTEND_GRACE_PERMISSION):
                url = reverse("admin:onboarding_managedphonenumber_extend_grace", args=[number.pk])
                messages.info(request, format_html('In grace: <a href="{}">extend grace</a>', url))
        return super().change_view(request, object_id, form_url, extra_context)

    @csrf_protect_m
    def extend_grace_view(self, request, object_id):
        if not request.user.has_perm(EXTEND_GRACE_PERMISSION):
            raise PermissionDenied
        number = self.get_object(request, unquote(object_id))
        if number is None:
            raise Http404("No phone number with this id.")
        change_url = reverse("admin:onboarding_managedphonenumber_change", args=[number.pk])
        if number.rental_status != "grace":
            messages.error(request, "Only a number in its grace period can be given more time.")
            return HttpResponseRedirect(change_url)
        if request.method == "POST":
            form = ExtendGraceForm(request.POST)
            if form.is_valid():
                data = form.cleaned_data
                try:
                    extended = rental.extend_grace(
                        number=number,
                        days=data["days"],
                        reason=data["reason"],
                        seen_grace_until=data["seen_grace_until"],
                    )
                except rental.GraceNotExtendable as exc:
                    form.add_error(None, exc.message)
                else:
                    change = (
                        f"Extended the grace of {number.phone_number} by {data['days']} days, "
                        f"to {extended.grace_until:%d %b %Y %H:%M} UTC. Reason: {data['reason']}"
                    )
                    self.log_change(request, number, change)
                    self.log_change(request, number.org, change)
                    messages.success(request, change)
                    return HttpResponseRedirect(change_url)
        else:
            form = ExtendGraceForm(
                initial={"days": 7, "seen_grace_until": number.grace_until.isoformat()}
            )
        request.current_app = self.admin_site.name
        context = {
            **self.admin_site.each_context(request),
            "title": "Extend grace",
            "summary": (
                f"{number.org}: {number.phone_number}, renewal unpaid since "
                f"{number.paid_until:%d %b %Y}, released at "
                f"{number.grace_until:%d %b %Y %H:%M} UTC unless paid."
            ),
            "submit_label": "Extend grace",
            "form": form,
            "opts": self.opts,
            "original": number,
            "media": self.media + form.media,
        }
        return TemplateResponse(request, "admin/billing/money_form.html", context)


class ManagedPhoneNumberInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = ManagedPhoneNumber
    fields = ["phone_number", "status", "twilio_number_sid", "vapi_phone_id", "created_at"]
    readonly_fields = fields
    extra = 0
    show_change_link = True


class ProvisioningAttemptInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = ProvisioningAttempt
    fields = [
        "created_at",
        "state",
        "phone_number",
        "purchased_at",
        "imported_at",
        "finished_at",
        "refunded_at",
        "error_detail",
    ]
    readonly_fields = fields
    ordering = ["-created_at"]
    extra = 0
    show_change_link = True
    verbose_name_plural = "phone provisioning attempts (newest first)"


class TwilioSubaccountInline(ReadOnlyAdminMixin, admin.StackedInline):
    """The SID only: the auth token is never shown."""

    model = TwilioSubaccount
    fields = ["account_sid", "friendly_name", "created_at"]
    readonly_fields = fields
    extra = 0


add_organization_inline(ManagedPhoneNumberInline)
add_organization_inline(ProvisioningAttemptInline)
add_organization_inline(TwilioSubaccountInline)
