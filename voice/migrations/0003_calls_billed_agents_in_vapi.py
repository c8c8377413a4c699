"""Agents get their Vapi assistant's state and one active agent per clinic; calls get their Vapi
id, what Vapi reported, and their charge. Clinics with several active agents keep the newest."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("billing", "0007_call_charge_always_recorded"),
        ("voice", "0002_content_types_follow_the_move"),
        ("voxanne", "0003_agent_call_move_to_voice"),
    ]

    operations = [
        migrations.AddField(
            model_name="agent",
            name="first_message",
            field=models.TextField(blank=True),
        ),
        migrations.AddField(
            model_name="agent",
            name="instructions",
            field=models.TextField(blank=True),
        ),
        migrations.AddField(
            model_name="agent",
            name="status",
            field=models.CharField(
                choices=[("creating", "Creating"), ("ready", "Ready")],
                default="creating",
                max_length=16,
            ),
        ),
        migrations.AddField(
            model_name="call",
            name="charge",
            field=models.OneToOneField(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="call",
                to="billing.ledgerentry",
            ),
        ),
        migrations.AddField(
            model_name="call",
            name="cost_pence",
            field=models.BigIntegerField(default=0),
        ),
        migrations.AddField(
            model_name="call",
            name="ended_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="call",
            name="ended_reason",
            field=models.CharField(blank=True, max_length=200),
        ),
        migrations.AddField(
            model_name="call",
            name="recording_url",
            field=models.TextField(blank=True),
        ),
        migrations.AddField(
            model_name="call",
            name="vapi_call_id",
            field=models.CharField(blank=True, max_length=100, null=True, unique=True),
        ),
        migrations.RunSQL(
            "SELECT set_config('app.system', 'on', true);"
            "UPDATE voxanne_agent a SET is_active = false WHERE a.is_active AND EXISTS ("
            " SELECT 1 FROM voxanne_agent b WHERE b.org_id = a.org_id AND b.is_active"
            " AND (b.created_at, b.id) > (a.created_at, a.id))",
            migrations.RunSQL.noop,
        ),
        migrations.AddConstraint(
            model_name="agent",
            constraint=models.UniqueConstraint(
                condition=models.Q(("is_active", True)),
                fields=("org",),
                name="one_active_agent_per_org",
            ),
        ),
        migrations.AddConstraint(
            model_name="agent",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    models.Q(("status", "ready"), _negated=True),
                    models.Q(("vapi_assistant_id", ""), _negated=True),
                    _connector="OR",
                ),
                name="ready_agent_has_assistant",
            ),
        ),
        migrations.AddConstraint(
            model_name="call",
            constraint=models.CheckConstraint(
                condition=models.Q(("cost_pence__gte", 0)), name="call_cost_not_negative"
            ),
        ),
    ]
