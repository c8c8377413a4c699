"""Support staff's admin for clinics' voice agents and calls."""

from __future__ import annotations

from django.contrib import admin

from voice.models import Agent, Call


@admin.register(Agent)
class AgentAdmin(admin.ModelAdmin):
    list_display = ["name", "org", "persona", "voice", "is_active", "created_at"]
    list_filter = ["is_active"]
    search_fields = ["name", "org__clinic_name"]
    readonly_fields = ["id", "created_at", "updated_at"]


@admin.register(Call)
class CallAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "org",
        "direction",
        "caller_number",
        "status",
        "started_at",
        "duration_seconds",
    ]
    list_filter = ["direction", "status"]
    search_fields = ["caller_number", "org__clinic_name"]
    readonly_fields = ["id", "created_at", "updated_at"]
    date_hierarchy = "started_at"
