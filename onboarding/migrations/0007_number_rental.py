"""The number's monthly rental: its dates on ManagedPhoneNumber (nullable until 0007 fills
them), and NumberNotice, the claimed-before-sent grace and release emails."""

import django.db.models.deletion
import uuid
from django.db import migrations, models

from voxanne.tenancy import enable_row_level_security


class Migration(migrations.Migration):
    dependencies = [
        ("onboarding", "0006_managed_number_vapi_id_index"),
        ("voxanne", "0003_agent_call_move_to_voice"),
    ]

    operations = [
        migrations.CreateModel(
            name="NumberNotice",
            fields=[
                (
                    "id",
                    models.UUIDField(
                        default=uuid.uuid4, editable=False, primary_key=True, serialize=False
                    ),
                ),
                ("period_due_at", models.DateTimeField()),
                (
                    "kind",
                    models.CharField(
                        choices=[
                            ("grace_day_0", "Renewal failed (grace day 0)"),
                            ("grace_day_3", "Grace reminder (day 3)"),
                            ("grace_day_6", "Last day of grace (day 6)"),
                            ("released", "Number released"),
                        ],
                        max_length=16,
                    ),
                ),
                (
                    "state",
                    models.CharField(
                        choices=[("sending", "Sending"), ("sent", "Sent")],
                        default="sending",
                        max_length=16,
                    ),
                ),
                ("recipient", models.CharField(max_length=254)),
                ("claimed_at", models.DateTimeField()),
                ("sent_at", models.DateTimeField(blank=True, null=True)),
                ("created_at", models.DateTimeField(auto_now_add=True)),
                ("updated_at", models.DateTimeField(auto_now=True)),
            ],
            options={
                "db_table": "onboarding_number_notice",
                "ordering": ["-claimed_at"],
            },
        ),
        migrations.AlterModelOptions(
            name="managedphonenumber",
            options={
                "ordering": ["-created_at"],
                "permissions": [("extend_grace", "Can extend a phone number's grace period")],
            },
        ),
        migrations.AddField(
            model_name="managedphonenumber",
            name="grace_extended_reason",
            field=models.CharField(blank=True, max_length=500),
        ),
        migrations.AddField(
            model_name="managedphonenumber",
            name="grace_until",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="managedphonenumber",
            name="months_paid",
            field=models.PositiveIntegerField(default=1),
        ),
        migrations.AddField(
            model_name="managedphonenumber",
            name="paid_until",
            field=models.DateTimeField(null=True),
        ),
        migrations.AddField(
            model_name="managedphonenumber",
            name="provider_released_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="managedphonenumber",
            name="release_lease_until",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="managedphonenumber",
            name="released_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="managedphonenumber",
            name="rental_started_at",
            field=models.DateTimeField(null=True),
        ),
        migrations.AddIndex(
            model_name="managedphonenumber",
            index=models.Index(
                condition=models.Q(("status", "active")),
                fields=["paid_until"],
                name="managed_number_renewal_idx",
            ),
        ),
        migrations.AddIndex(
            model_name="managedphonenumber",
            index=models.Index(
                condition=models.Q(("provider_released_at__isnull", True), ("status", "released")),
                fields=["released_at"],
                name="managed_number_unreleased_idx",
            ),
        ),
        migrations.AddConstraint(
            model_name="managedphonenumber",
            constraint=models.CheckConstraint(
                condition=models.Q(("months_paid__gte", 1)),
                name="managed_number_months_paid_positive",
            ),
        ),
        migrations.AddField(
            model_name="numbernotice",
            name="number",
            field=models.ForeignKey(
                on_delete=django.db.models.deletion.PROTECT,
                related_name="notices",
                to="onboarding.managedphonenumber",
            ),
        ),
        migrations.AddField(
            model_name="numbernotice",
            name="org",
            field=models.ForeignKey(
                on_delete=django.db.models.deletion.PROTECT,
                related_name="number_notices",
                to="voxanne.organization",
            ),
        ),
        migrations.AddConstraint(
            model_name="numbernotice",
            constraint=models.UniqueConstraint(
                fields=("number", "period_due_at", "kind"), name="number_notice_once"
            ),
        ),
        migrations.AddConstraint(
            model_name="numbernotice",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    ("state", "sending"), ("sent_at__isnull", False), _connector="OR"
                ),
                name="number_notice_sent_has_time",
            ),
        ),
        enable_row_level_security("onboarding_number_notice"),
    ]
