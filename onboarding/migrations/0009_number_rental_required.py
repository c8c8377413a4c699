from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("onboarding", "0008_number_rental_dates")]

    operations = [
        migrations.AlterField(
            model_name="managedphonenumber",
            name="rental_started_at",
            field=models.DateTimeField(),
        ),
        migrations.AlterField(
            model_name="managedphonenumber",
            name="paid_until",
            field=models.DateTimeField(),
        ),
        migrations.AddConstraint(
            model_name="managedphonenumber",
            constraint=models.CheckConstraint(
                condition=models.Q(status="active") | models.Q(released_at__isnull=False),
                name="managed_number_released_has_time",
            ),
        ),
    ]
