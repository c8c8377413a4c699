"""The Celery app: broker is REDIS_URL; the beat schedule lives in the database."""

import os

from celery import Celery
from celery.signals import setup_logging

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "voxanne.settings")

app = Celery("voxanne")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@setup_logging.connect
def use_django_logging(**kwargs) -> None:
    """The worker and beat log through settings.LOGGING (our JSON lines, `extra` fields kept)
    instead of Celery's own formatter; connecting this signal stops Celery configuring any."""
    from logging.config import dictConfig

    from django.conf import settings

    dictConfig(settings.LOGGING)
