from django.db import migrations

from voxanne.tenancy import enable_row_level_security


class Migration(migrations.Migration):
    dependencies = [("onboarding", "0003_provisioning")]

    operations = [
        enable_row_level_security("onboarding_twiliosubaccount"),
        enable_row_level_security("onboarding_provisioningattempt"),
        enable_row_level_security("onboarding_managedphonenumber"),
    ]
