"""Suite-wide fixtures: real Postgres (as an unprivileged role, so RLS applies), real Redis."""

from __future__ import annotations

import socket

import pytest

from voxanne.celery import app as celery_app
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
    celery_app.conf.task_always_eager = True
    try:
        yield
    finally:
        celery_app.conf.task_always_eager = False


def _dead_redis_url() -> str:
    with socket.socket() as probe:  # a port nothing listens on once the probe closes
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"redis://127.0.0.1:{port}/0"


@pytest.fixture
def redis_down(settings):
    """Redis gone for this test: the cache and Celery's broker point at a port nobody listens on."""
    url = _dead_redis_url()
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": url,
            "OPTIONS": {"socket_connect_timeout": 0.5, "socket_timeout": 0.5},
        }
    }
    # Celery keeps the pools it made at first use (bound to the old URL): drop them both ways,
    # or an earlier test's live connection would keep publishing to the real Redis.
    previous = celery_app.conf.broker_url
    celery_app.conf.broker_url = url
    celery_app._pool, celery_app.amqp._producer_pool = None, None
    yield
    celery_app.conf.broker_url = previous
    celery_app._pool, celery_app.amqp._producer_pool = None, None
