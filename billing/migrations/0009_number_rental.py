"""The number_rental entry type: a month of a phone number, a debit."""

from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("billing", "0008_support_refund_to_card_and_unfreeze"),
        ("voxanne", "0003_agent_call_move_to_voice"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.RemoveConstraint(
            model_name="ledgerentry",
            name="ledger_debit_types_negative",
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
                    ("number_rental", "Number rental"),
                ],
                max_length=32,
            ),
        ),
        migrations.AddConstraint(
            model_name="ledgerentry",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    models.Q(
                        (
                            "type__in",
                            ("phone_provisioning", "card_refund", "chargeback", "number_rental"),
                        ),
                        _negated=True,
                    ),
                    ("amount_pence__lt", 0),
                    _connector="OR",
                ),
                name="ledger_debit_types_negative",
            ),
        ),
    ]
