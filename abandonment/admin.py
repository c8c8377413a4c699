"""Support's view of the abandonment emails: read-only, per clinic and across clinics.

Rows are evidence of what was promised (email 3 promises £10), so nobody edits them here.
The schedule itself is django-celery-beat's "Abandonment emails" periodic task.
"""

from __future__ import annotations

from django.contrib import admin

from abandonment.models import AbandonmentEmail, OptOut
from voxanne.admin import ReadOnlyAdminMixin, add_organization_inline


class AbandonmentEmailInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = AbandonmentEmail
    fields = ["sequence", "state", "recipient", "subject", "sent_at", "credit_applied"]
    readonly_fields = fields
    ordering = ["sequence"]
    extra = 0
    can_delete = False
    verbose_name_plural = "abandonment emails"


class OptOutInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = OptOut
    fields = ["email", "created_at"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    # One row at most (one-to-one), so Django titles the panel with verbose_name.
    verbose_name = "abandonment emails opt-out (empty: still subscribed)"
    verbose_name_plural = verbose_name


add_organization_inline(AbandonmentEmailInline)
add_organization_inline(OptOutInline)


@admin.register(AbandonmentEmail)
class AbandonmentEmailAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = [
        "org",
        "sequence",
        "state",
        "recipient",
        "sent_at",
        "credit_applied",
        "opted_out",
    ]
    list_filter = ["sequence", "state", "credit_applied"]
    search_fields = ["recipient", "org__clinic_name", "org__id"]
    list_select_related = ["org", "org__abandonment_opt_out"]
    date_hierarchy = "sent_at"
    fields = [
        "id",
        "org",
        "sequence",
        "state",
        "recipient",
        "subject",
        "claimed_at",
        "sent_at",
        "credit_applied",
        "created_at",
        "updated_at",
    ]
    readonly_fields = fields

    @admin.display(boolean=True, description="opted out")
    def opted_out(self, obj: AbandonmentEmail) -> bool:
        return hasattr(obj.org, "abandonment_opt_out")


@admin.register(OptOut)
class OptOutAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["org", "email", "created_at"]
    search_fields = ["email", "org__clinic_name"]
    list_select_related = ["org"]
    readonly_fields = ["id", "org", "email", "created_at", "updated_at"]
