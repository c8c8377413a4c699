"""Support staff's admin for clinics and their users.

Apps add their own panels to the clinic page with `add_organization_inline` (billing's
ledger, onboarding's events, ...) and filters to the clinic list with
`add_organization_filter`, so the core never imports an app.
"""

from __future__ import annotations

from django import forms
from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.contrib.auth.forms import UserChangeForm, UserCreationForm

from voxanne.models import Organization, User


def add_organization_inline(inline: type[admin.options.InlineModelAdmin]) -> None:
    """Show an app's inline on the clinic page (called from that app's admin.py)."""
    if inline not in OrganizationAdmin.inlines:
        OrganizationAdmin.inlines = [*OrganizationAdmin.inlines, inline]


def add_organization_filter(list_filter: type[admin.ListFilter] | str) -> None:
    """Offer an app's filter on the clinic list (called from that app's admin.py)."""
    if list_filter not in OrganizationAdmin.list_filter:
        OrganizationAdmin.list_filter = [*OrganizationAdmin.list_filter, list_filter]


class ReadOnlyAdminMixin:
    """Rows only their app's services write (ledger, events, attempts, sent emails): admin
    may look, never add, change or delete."""

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


class UserInline(admin.TabularInline):
    model = User
    fields = ["email", "is_active", "last_login", "created_at"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Organization)
class OrganizationAdmin(admin.ModelAdmin):
    list_display = ["__str__", "specialty", "owner", "onboarding_completed_at", "created_at"]
    search_fields = ["clinic_name", "id", "users__email"]
    readonly_fields = ["id", "owner", "onboarding_completed_at", "created_at", "updated_at"]
    fields = [
        "id",
        "clinic_name",
        "specialty",
        "owner",
        "onboarding_completed_at",
        "created_at",
        "updated_at",
    ]
    inlines: list = [UserInline]


class ClinicUserCreationForm(UserCreationForm):
    class Meta:
        model = User
        fields = ["email", "organization"]

    def clean_email(self):
        return User.objects.normalize_email(self.cleaned_data["email"]).lower()

    def clean_organization(self):
        # The database refuses a clinic user without a clinic (clinic_user_has_organization);
        # say so on the form instead of failing the save.
        organization = self.cleaned_data.get("organization")
        if organization is None:
            raise forms.ValidationError(
                "Choose the clinic this user works for. Support staff are created with "
                "manage.py createsuperuser."
            )
        return organization


class ClinicUserChangeForm(UserChangeForm):
    class Meta:
        model = User
        fields = "__all__"

    def clean_email(self):
        return User.objects.normalize_email(self.cleaned_data["email"]).lower()


@admin.register(User)
class UserAdmin(DjangoUserAdmin):
    form = ClinicUserChangeForm
    add_form = ClinicUserCreationForm
    ordering = ["email"]
    list_display = ["email", "organization", "is_active", "is_staff", "last_login"]
    list_filter = ["is_staff", "is_active", "is_superuser"]
    search_fields = ["email"]
    readonly_fields = ["id", "last_login", "created_at", "updated_at"]
    fieldsets = [
        (None, {"fields": ["id", "email", "password", "organization"]}),
        (
            "Access",
            {"fields": ["is_active", "is_staff", "is_superuser", "groups", "user_permissions"]},
        ),
        ("Dates", {"fields": ["last_login", "created_at", "updated_at"]}),
    ]
    add_fieldsets = [
        (None, {"classes": ["wide"], "fields": ["email", "organization", "password1", "password2"]})
    ]
    # Who holds power is for superusers to say: anyone else with "change user" could otherwise
    # tick is_superuser on themselves, or set a superuser's password and sign in as them.
    superuser_only_fields = ["is_staff", "is_superuser", "groups", "user_permissions"]

    def get_readonly_fields(self, request, obj=None):
        readonly = list(super().get_readonly_fields(request, obj))
        if not request.user.is_superuser:
            readonly += self.superuser_only_fields
        return readonly

    def _manages(self, request, obj) -> bool:
        """Non-superusers manage clinic users and their own account, no other staff."""
        return (
            obj is None
            or request.user.is_superuser
            or not obj.is_staff
            or obj.pk == request.user.pk
        )

    def has_change_permission(self, request, obj=None) -> bool:
        return super().has_change_permission(request, obj) and self._manages(request, obj)

    def has_delete_permission(self, request, obj=None) -> bool:
        return super().has_delete_permission(request, obj) and self._manages(request, obj)
