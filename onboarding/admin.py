"""Onboarding's panels on the clinic page (attached through voxanne.admin's hooks)."""

from __future__ import annotations

from django.contrib import admin

from onboarding import services
from onboarding.models import OnboardingEvent
from voxanne.admin import add_organization_filter, add_organization_inline


class OnboardingEventInline(admin.TabularInline):
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

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


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
