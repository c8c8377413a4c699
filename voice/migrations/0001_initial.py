"""Agent and Call move here from the core: state only, the tables (and their row-level
security) stay as they are."""

import uuid

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    initial = True

    dependencies = [
        ("voxanne", "0003_agent_call_move_to_voice"),
    ]

    state_operations = [
        migrations.CreateModel(
            name="Agent",
            fields=[
                ("created_at", models.DateTimeField(auto_now_add=True)),
                ("updated_at", models.DateTimeField(auto_now=True)),
                (
                    "id",
                    models.UUIDField(
                        default=uuid.uuid4, editable=False, primary_key=True, serialize=False
                    ),
                ),
                ("name", models.CharField(max_length=200)),
                ("persona", models.CharField(blank=True, max_length=100)),
                ("voice", models.CharField(blank=True, max_length=100)),
                ("vapi_assistant_id", models.CharField(blank=True, max_length=100)),
                ("is_active", models.BooleanField(default=True)),
                (
                    "org",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="agents",
                        to="voxanne.organization",
                    ),
                ),
            ],
            options={
                "db_table": "voxanne_agent",
                "ordering": ["-created_at"],
                "indexes": [
                    models.Index(fields=["org", "-created_at"], name="agent_org_created_idx")
                ],
            },
        ),
        migrations.CreateModel(
            name="Call",
            fields=[
                ("created_at", models.DateTimeField(auto_now_add=True)),
                ("updated_at", models.DateTimeField(auto_now=True)),
                (
                    "id",
                    models.UUIDField(
                        default=uuid.uuid4, editable=False, primary_key=True, serialize=False
                    ),
                ),
                (
                    "direction",
                    models.CharField(
                        choices=[("inbound", "Inbound"), ("outbound", "Outbound")],
                        default="inbound",
                        max_length=10,
                    ),
                ),
                ("caller_number", models.CharField(blank=True, max_length=32)),
                ("status", models.CharField(default="completed", max_length=32)),
                ("started_at", models.DateTimeField()),
                ("duration_seconds", models.PositiveIntegerField(default=0)),
                ("summary", models.TextField(blank=True)),
                (
                    "agent",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="calls",
                        to="voice.agent",
                    ),
                ),
                (
                    "org",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="calls",
                        to="voxanne.organization",
                    ),
                ),
            ],
            options={
                "db_table": "voxanne_call",
                "ordering": ["-started_at"],
                "indexes": [
                    models.Index(fields=["org", "-started_at"], name="call_org_started_idx")
                ],
            },
        ),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(state_operations=state_operations),
    ]
