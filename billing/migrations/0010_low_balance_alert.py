"""The low-balance email's line and its once-per-crossing mark, on the wallet (issue 17)."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("billing", "0009_number_rental")]

    operations = [
        migrations.AddField(
            model_name="wallet",
            name="low_balance_alerted_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="wallet",
            name="low_balance_pence",
            field=models.BigIntegerField(default=500),
        ),
        migrations.AddConstraint(
            model_name="wallet",
            constraint=models.CheckConstraint(
                condition=models.Q(("low_balance_pence__gte", 0)),
                name="wallet_low_balance_not_negative",
            ),
        ),
    ]
