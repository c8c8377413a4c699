"""gunicorn entry for bench/api.py: voxanne.wsgi's application, routed by bench.floor.urls."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "voxanne.settings")
application = get_wsgi_application()

from django.conf import settings  # noqa: E402

# Set once, before the first request, so the benchmark needs no settings of its own.
settings.ROOT_URLCONF = "bench.floor.urls"
