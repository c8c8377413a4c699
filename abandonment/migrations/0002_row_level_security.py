from django.db import migrations

from voxanne.tenancy import enable_row_level_security


class Migration(migrations.Migration):
    dependencies = [("abandonment", "0001_emails_and_opt_outs")]

    operations = [
        enable_row_level_security("abandonment_email"),
        enable_row_level_security("abandonment_opt_out"),
    ]
