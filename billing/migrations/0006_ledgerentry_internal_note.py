"""Support's reason moves out of the clinic-facing description into a staff-only note.

The ledger is append-only (a trigger refuses UPDATE, see 0002). Adding a column with a constant
default rewrites no row and fires no row trigger: Postgres stores the default once and existing
entries read it. The default stays in the database so every writer, raw SQL included, can
append without naming the column.
"""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("billing", "0005_reconcile_topups_schedule"),
    ]

    operations = [
        migrations.AddField(
            model_name="ledgerentry",
            name="internal_note",
            field=models.CharField(blank=True, db_default="", default="", max_length=500),
        ),
    ]
