"""Auto-recharge: its settings and attempts, and the trigger on the wallet (issue 17)."""

import django.db.models.deletion
import uuid
from django.db import migrations, models

from voxanne.tenancy import enable_row_level_security


class Migration(migrations.Migration):
    dependencies = [
        ("billing", "0010_low_balance_alert"),
        ("voxanne", "0003_agent_call_move_to_voice"),
    ]

    operations = [
        migrations.CreateModel(
            name="AutoRecharge",
            fields=[
                (
                    "id",
                    models.UUIDField(
                        default=uuid.uuid4, editable=False, primary_key=True, serialize=False
                    ),
                ),
                ("enabled", models.BooleanField(default=False)),
                ("threshold_pence", models.BigIntegerField(default=1000)),
                ("amount_pence", models.BigIntegerField(default=2500)),
                ("stripe_customer_id", models.CharField(blank=True, max_length=255)),
                ("stripe_payment_method_id", models.CharField(blank=True, max_length=255)),
                ("paused_reason", models.CharField(blank=True, max_length=500)),
                ("paused_at", models.DateTimeField(blank=True, null=True)),
                ("created_at", models.DateTimeField(auto_now_add=True)),
                ("updated_at", models.DateTimeField(auto_now=True)),
            ],
            options={
                "db_table": "billing_auto_recharge",
            },
        ),
        migrations.CreateModel(
            name="RechargeAttempt",
            fields=[
                (
                    "id",
                    models.UUIDField(
                        default=uuid.uuid4, editable=False, primary_key=True, serialize=False
                    ),
                ),
                (
                    "state",
                    models.CharField(
                        choices=[
                            ("in_flight", "In flight"),
                            ("succeeded", "Paid"),
                            ("failed", "Failed (auto-recharge paused)"),
                        ],
                        default="in_flight",
                        max_length=16,
                    ),
                ),
                ("amount_pence", models.BigIntegerField()),
                ("stripe_customer_id", models.CharField(max_length=255)),
                ("stripe_payment_method_id", models.CharField(max_length=255)),
                ("payment_intent_id", models.CharField(blank=True, db_index=True, max_length=255)),
                ("lease_until", models.DateTimeField()),
                ("error_code", models.CharField(blank=True, max_length=64)),
                ("error_detail", models.TextField(blank=True)),
                ("owner_notified_at", models.DateTimeField(blank=True, null=True)),
                ("finished_at", models.DateTimeField(blank=True, null=True)),
                ("created_at", models.DateTimeField(auto_now_add=True)),
                ("updated_at", models.DateTimeField(auto_now=True)),
            ],
            options={
                "db_table": "billing_recharge_attempt",
                "ordering": ["-created_at"],
            },
        ),
        migrations.AddField(
            model_name="wallet",
            name="auto_recharge_below_pence",
            field=models.BigIntegerField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="autorecharge",
            name="org",
            field=models.OneToOneField(
                on_delete=django.db.models.deletion.PROTECT,
                related_name="auto_recharge",
                to="voxanne.organization",
            ),
        ),
        migrations.AddField(
            model_name="rechargeattempt",
            name="org",
            field=models.ForeignKey(
                on_delete=django.db.models.deletion.PROTECT,
                related_name="recharges",
                to="voxanne.organization",
            ),
        ),
        migrations.AddConstraint(
            model_name="autorecharge",
            constraint=models.CheckConstraint(
                condition=models.Q(("threshold_pence__gte", 500)),
                name="auto_recharge_threshold_at_least_500",
            ),
        ),
        migrations.AddConstraint(
            model_name="autorecharge",
            constraint=models.CheckConstraint(
                condition=models.Q(("amount_pence__gt", 0)), name="auto_recharge_amount_positive"
            ),
        ),
        migrations.AddIndex(
            model_name="rechargeattempt",
            index=models.Index(fields=["org", "-created_at"], name="recharge_org_created_idx"),
        ),
        migrations.AddConstraint(
            model_name="rechargeattempt",
            constraint=models.UniqueConstraint(
                condition=models.Q(("state", "in_flight")),
                fields=("org",),
                name="one_recharge_in_flight_per_org",
            ),
        ),
        migrations.AddConstraint(
            model_name="rechargeattempt",
            constraint=models.CheckConstraint(
                condition=models.Q(("amount_pence__gt", 0)), name="recharge_amount_positive"
            ),
        ),
        migrations.AddConstraint(
            model_name="rechargeattempt",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    ("state", "in_flight"), ("finished_at__isnull", False), _connector="OR"
                ),
                name="recharge_finished_has_time",
            ),
        ),
        enable_row_level_security("billing_auto_recharge"),
        enable_row_level_security("billing_recharge_attempt"),
    ]
