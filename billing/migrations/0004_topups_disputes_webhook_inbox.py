"""Stripe top-ups, disputes and the webhook inbox; the ledger's one non-negative rule.

The wallet's own balance >= 0 check and the entry's balance_after >= 0 check become one
ledger check, `ledger_spending_not_below_zero`: only money already gone (a refund to the card,
a chargeback) may leave a balance below zero. Top-ups and disputes are tenant rows under RLS.
"""

import django.db.models.deletion
import uuid
from django.conf import settings
from django.db import migrations, models

from voxanne.tenancy import enable_row_level_security


class Migration(migrations.Migration):
    dependencies = [
        ("billing", "0003_reconcile_wallets_schedule"),
        ("voxanne", "0002_row_level_security"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name="Dispute",
            fields=[
                (
                    "id",
                    models.UUIDField(
                        default=uuid.uuid4, editable=False, primary_key=True, serialize=False
                    ),
                ),
                ("stripe_dispute_id", models.CharField(max_length=255, unique=True)),
                ("amount_pence", models.BigIntegerField()),
                (
                    "status",
                    models.CharField(
                        choices=[("open", "Open"), ("won", "Won"), ("lost", "Lost")], max_length=16
                    ),
                ),
                ("closed_at", models.DateTimeField(blank=True, null=True)),
                ("created_at", models.DateTimeField(auto_now_add=True)),
                ("updated_at", models.DateTimeField(auto_now=True)),
            ],
            options={
                "db_table": "billing_dispute",
            },
        ),
        migrations.CreateModel(
            name="TopUp",
            fields=[
                (
                    "id",
                    models.UUIDField(
                        default=uuid.uuid4, editable=False, primary_key=True, serialize=False
                    ),
                ),
                ("amount_pence", models.BigIntegerField()),
                (
                    "status",
                    models.CharField(
                        choices=[
                            ("pending", "Pending"),
                            ("paid", "Paid"),
                            ("failed", "Failed"),
                            ("expired", "Expired"),
                            ("refunded", "Refunded"),
                            ("partially_refunded", "Partially Refunded"),
                        ],
                        default="pending",
                        max_length=32,
                    ),
                ),
                ("idempotency_key", models.CharField(blank=True, max_length=255)),
                (
                    "stripe_session_id",
                    models.CharField(blank=True, max_length=255, null=True, unique=True),
                ),
                ("checkout_url", models.TextField(blank=True)),
                ("payment_intent_id", models.CharField(blank=True, db_index=True, max_length=255)),
                ("charge_id", models.CharField(blank=True, db_index=True, max_length=255)),
                ("receipt_url", models.TextField(blank=True)),
                ("paid_pence", models.BigIntegerField(blank=True, null=True)),
                ("refunded_pence", models.BigIntegerField(default=0)),
                ("paid_at", models.DateTimeField(blank=True, null=True)),
                ("receipt_sent_at", models.DateTimeField(blank=True, null=True)),
                ("created_at", models.DateTimeField(auto_now_add=True)),
                ("updated_at", models.DateTimeField(auto_now=True)),
            ],
            options={
                "verbose_name": "top-up",
                "db_table": "billing_topup",
                "ordering": ["-created_at"],
            },
        ),
        migrations.CreateModel(
            name="WebhookEvent",
            fields=[
                (
                    "id",
                    models.UUIDField(
                        default=uuid.uuid4, editable=False, primary_key=True, serialize=False
                    ),
                ),
                (
                    "provider",
                    models.CharField(
                        choices=[("stripe", "Stripe"), ("vapi", "Vapi")], max_length=16
                    ),
                ),
                ("event_id", models.CharField(max_length=255)),
                ("type", models.CharField(max_length=100)),
                ("payload", models.JSONField()),
                (
                    "outcome",
                    models.CharField(
                        choices=[("processed", "Processed"), ("ignored", "Ignored")], max_length=16
                    ),
                ),
                ("error", models.TextField(blank=True)),
                ("received_at", models.DateTimeField()),
                ("processed_at", models.DateTimeField()),
                ("created_at", models.DateTimeField(auto_now_add=True)),
                ("updated_at", models.DateTimeField(auto_now=True)),
            ],
            options={
                "db_table": "billing_webhook_event",
                "ordering": ["-received_at"],
            },
        ),
        migrations.RemoveConstraint(
            model_name="ledgerentry",
            name="ledger_balance_after_not_negative",
        ),
        migrations.RemoveConstraint(
            model_name="ledgerentry",
            name="ledger_debit_types_negative",
        ),
        migrations.RemoveConstraint(
            model_name="wallet",
            name="wallet_balance_not_negative",
        ),
        migrations.AddField(
            model_name="wallet",
            name="frozen_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="wallet",
            name="frozen_reason",
            field=models.CharField(blank=True, max_length=500),
        ),
        migrations.AlterField(
            model_name="ledgerentry",
            name="type",
            field=models.CharField(
                choices=[
                    ("topup", "Top-up"),
                    ("phone_provisioning", "Phone number"),
                    ("refund", "Refund"),
                    ("bonus", "Bonus"),
                    ("adjustment", "Adjustment"),
                    ("card_refund", "Refund to card"),
                    ("chargeback", "Chargeback"),
                ],
                max_length=32,
            ),
        ),
        migrations.AddConstraint(
            model_name="ledgerentry",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    ("balance_after_pence__gte", 0),
                    ("amount_pence__gt", 0),
                    ("type__in", ("card_refund", "chargeback")),
                    _connector="OR",
                ),
                name="ledger_spending_not_below_zero",
            ),
        ),
        migrations.AddConstraint(
            model_name="ledgerentry",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    models.Q(
                        ("type__in", ("phone_provisioning", "card_refund", "chargeback")),
                        _negated=True,
                    ),
                    ("amount_pence__lt", 0),
                    _connector="OR",
                ),
                name="ledger_debit_types_negative",
            ),
        ),
        migrations.AddField(
            model_name="dispute",
            name="org",
            field=models.ForeignKey(
                on_delete=django.db.models.deletion.PROTECT,
                related_name="disputes",
                to="voxanne.organization",
            ),
        ),
        migrations.AddField(
            model_name="topup",
            name="org",
            field=models.ForeignKey(
                on_delete=django.db.models.deletion.PROTECT,
                related_name="topups",
                to="voxanne.organization",
            ),
        ),
        migrations.AddField(
            model_name="dispute",
            name="topup",
            field=models.ForeignKey(
                on_delete=django.db.models.deletion.PROTECT,
                related_name="disputes",
                to="billing.topup",
            ),
        ),
        migrations.AddIndex(
            model_name="webhookevent",
            index=models.Index(
                fields=["provider", "type", "-received_at"], name="webhook_type_idx"
            ),
        ),
        migrations.AddConstraint(
            model_name="webhookevent",
            constraint=models.UniqueConstraint(
                fields=("provider", "event_id"), name="webhook_event_unique_per_provider"
            ),
        ),
        migrations.AddIndex(
            model_name="topup",
            index=models.Index(fields=["org", "-created_at"], name="topup_org_created_idx"),
        ),
        migrations.AddIndex(
            model_name="topup",
            index=models.Index(
                condition=models.Q(("status", "pending")),
                fields=["created_at"],
                name="topup_pending_created_idx",
            ),
        ),
        migrations.AddConstraint(
            model_name="topup",
            constraint=models.UniqueConstraint(
                condition=models.Q(("idempotency_key", ""), _negated=True),
                fields=("org", "idempotency_key"),
                name="topup_key_unique_per_org",
            ),
        ),
        migrations.AddConstraint(
            model_name="topup",
            constraint=models.CheckConstraint(
                condition=models.Q(("amount_pence__gt", 0)), name="topup_amount_positive"
            ),
        ),
        migrations.AddConstraint(
            model_name="topup",
            constraint=models.CheckConstraint(
                condition=models.Q(("refunded_pence__gte", 0)), name="topup_refunded_not_negative"
            ),
        ),
        migrations.AddConstraint(
            model_name="topup",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    (
                        "status__in",
                        ["pending", "paid", "failed", "expired", "refunded", "partially_refunded"],
                    )
                ),
                name="topup_status_known",
            ),
        ),
        migrations.AddConstraint(
            model_name="dispute",
            constraint=models.CheckConstraint(
                condition=models.Q(("amount_pence__gt", 0)), name="dispute_amount_positive"
            ),
        ),
        enable_row_level_security("billing_topup"),
        enable_row_level_security("billing_dispute"),
    ]
