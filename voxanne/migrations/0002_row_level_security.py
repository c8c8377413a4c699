from django.db import migrations

from voxanne.tenancy import enable_row_level_security


class Migration(migrations.Migration):
    dependencies = [("voxanne", "0001_initial")]

    operations = [
        enable_row_level_security("voxanne_agent"),
        enable_row_level_security("voxanne_call"),
    ]
