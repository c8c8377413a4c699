"""Data migration: numbers bought before the rental existed were paid for their first month
by the provisioning charge, like every number since."""

from django.db import migrations

from onboarding.models import add_months


def fill_dates(apps, schema_editor):
    ManagedPhoneNumber = apps.get_model("onboarding", "ManagedPhoneNumber")
    for number in ManagedPhoneNumber.objects.filter(paid_until__isnull=True).iterator():
        number.rental_started_at = number.created_at
        number.paid_until = add_months(number.created_at, 1)
        if number.status == "released":  # released before: nothing left at the providers
            number.released_at = number.provider_released_at = number.updated_at
        number.save(
            update_fields=["rental_started_at", "paid_until", "released_at", "provider_released_at"]
        )


class Migration(migrations.Migration):
    dependencies = [("onboarding", "0007_number_rental")]

    operations = [migrations.RunPython(fill_dates, migrations.RunPython.noop)]
