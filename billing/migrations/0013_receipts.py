"""send_receipts runs every minute (staff may change it in admin), on an index of the receipts
still due."""

from django.db import migrations, models

TASK_NAME = "Send top-up receipts"
TASK = "billing.send_receipts"


def create_schedule(apps, schema_editor):
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    every_minute, _ = IntervalSchedule.objects.get_or_create(every=1, period="minutes")
    PeriodicTask.objects.get_or_create(
        name=TASK_NAME,
        defaults={"task": TASK, "interval": every_minute, "enabled": True},
    )


def remove_schedule(apps, schema_editor):
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    PeriodicTask.objects.filter(name=TASK_NAME, task=TASK).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("billing", "0012_debit_types_call_charge_and_number_rental"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [
        migrations.AddIndex(
            model_name="topup",
            index=models.Index(
                condition=models.Q(("paid_at__isnull", False), ("receipt_sent_at__isnull", True)),
                fields=["paid_at"],
                name="topup_receipt_due_idx",
            ),
        ),
        migrations.RunPython(create_schedule, remove_schedule),
    ]
