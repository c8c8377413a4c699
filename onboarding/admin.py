"""Onboarding's panels on the clinic page (attached through voxanne.admin's hooks)."""

from __future__ import annotations

from django.contrib import admin, messages

from onboarding import reconciler, services
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
            return services.viewed_payment_but_not_paid(queryset)
        return queryset


add_organization_inline(OnboardingEventInline)
add_organization_filter(OnboardingCompletedFilter)
add_organization_filter(PaymentStepFilter)


# --- Paid phone-number provisioning: read-only, plus "run the reconciler for this attempt" ---


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
    list_display = ["phone_number", "org", "status", "created_at"]
    list_filter = ["status"]
    search_fields = ["phone_number", "org__clinic_name", "twilio_number_sid"]
    list_select_related = ["org"]
    fields = [
        "id",
        "org",
        "phone_number",
        "status",
        "twilio_number_sid",
        "subaccount_sid",
        "vapi_phone_id",
        "attempt",
        "created_at",
        "updated_at",
    ]
    readonly_fields = fields


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
