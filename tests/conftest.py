"""Suite-wide fixtures: real Postgres (as an unprivileged role, so RLS applies), real Redis."""

from __future__ import annotations

import pytest

from voxanne.tenancy import system_context

DB_FIXTURES = {
    "db",
    "transactional_db",
    "live_server",
    "django_db_reset_sequences",
    "django_db_serialized_rollback",
}


@pytest.fixture(autouse=True)
def _fast_and_unthrottled(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.AUTH_THROTTLE_RATE = None
    settings.AUTH_EMAIL_THROTTLE_RATE = None


@pytest.fixture(autouse=True)
def _system_scope(request):
    """Test code (factories, assertions) sees every org; requests still start at deny."""
    uses_db = request.node.get_closest_marker("django_db") or DB_FIXTURES & set(
        request.fixturenames
    )
    if not uses_db:
        yield
        return
    request.getfixturevalue("_django_db_helper")
    with system_context("tests"):
        yield


@pytest.fixture
def api():
    from rest_framework.test import APIClient

    return APIClient()


@pytest.fixture
def celery_eager():
    """Tasks run in the caller's thread instead of waiting for a worker (pair it with
    django_capture_on_commit_callbacks(execute=True) for tasks enqueued on commit)."""
    from voxanne.celery import app

    app.conf.task_always_eager = True
    try:
        yield
    finally:
        app.conf.task_always_eager = False
