"""The Celery app: broker is REDIS_URL; the beat schedule lives in the database."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "voxanne.settings")

app = Celery("voxanne")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
