"""The beat schedule is data: the abandonment pass every 15 minutes, visible in admin.

Creates what is missing and changes nothing staff may have edited (a paused task stays paused).
Reversing removes only the task this migration adds.
"""

from django.db import migrations
from django.utils import timezone

TASK_NAME = "Abandonment emails"
TASK = "abandonment.tasks.run_abandonment_pass"


def create_schedule(apps, schema_editor):
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    PeriodicTasks = apps.get_model("django_celery_beat", "PeriodicTasks")
    if PeriodicTask.objects.filter(name=TASK_NAME).exists():
        return
    every_15 = IntervalSchedule.objects.filter(every=15, period="minutes").order_by("id").first()
    if every_15 is None:
        every_15 = IntervalSchedule.objects.create(every=15, period="minutes")
    PeriodicTask.objects.create(
        name=TASK_NAME,
        task=TASK,
        interval=every_15,
        enabled=True,
        description="Sends the due abandonment email to each abandoned clinic and gives the £10 "
        "credit after email 3. Safe to run at any time, and twice.",
    )
    # The historical model sends no signals: tell a running beat that its schedule changed.
    PeriodicTasks.objects.update_or_create(ident=1, defaults={"last_update": timezone.now()})


def remove_schedule(apps, schema_editor):
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    PeriodicTask.objects.filter(name=TASK_NAME, task=TASK).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("abandonment", "0002_row_level_security"),
        ("django_celery_beat", "0018_improve_crontab_helptext"),
    ]

    operations = [migrations.RunPython(create_schedule, remove_schedule)]
