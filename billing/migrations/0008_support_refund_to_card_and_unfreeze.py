"""Permissions for support: refund a top-up to the card, unfreeze a wallet on hold."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("billing", "0007_call_charge_always_recorded"),
    ]

    operations = [
        migrations.AlterModelOptions(
            name="topup",
            options={
                "ordering": ["-created_at"],
                "permissions": [("refund_to_card", "Can refund a top-up to the card")],
                "verbose_name": "top-up",
            },
        ),
        migrations.AlterModelOptions(
            name="wallet",
            options={
                "permissions": [
                    ("issue_refund", "Can refund a wallet debit"),
                    ("add_credit", "Can add credit to a wallet"),
                    ("unfreeze_wallet", "Can unfreeze a wallet on hold"),
                ]
            },
        ),
    ]
