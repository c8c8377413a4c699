"""Agent and Call now belong to the voice app (voice/0001 adds them to its state with the same
tables): state only, no database change."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("voxanne", "0002_row_level_security")]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.DeleteModel(name="Call"),
                migrations.DeleteModel(name="Agent"),
            ]
        ),
    ]
