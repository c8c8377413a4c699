"""Doubles for the abandonment tests: a real SMTP server on 127.0.0.1 (aiosmtpd)."""

from __future__ import annotations

import logging
import socket
from dataclasses import dataclass, field

import pytest
from aiosmtpd.controller import Controller

logging.getLogger("mail.log").setLevel(logging.WARNING)  # aiosmtpd logs every command


@dataclass
class SmtpDouble:
    """An SMTP server that accepts every recipient except those in `refuse`."""

    refuse: set[str] = field(default_factory=set)
    messages: list = field(default_factory=list)
    host: str = "127.0.0.1"
    port: int = 0

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.lower() in self.refuse:
            return "550 5.1.1 Mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        from email import message_from_bytes
        from email.policy import default

        self.messages.append(
            (list(envelope.rcpt_tos), message_from_bytes(envelope.content, policy=default))
        )
        return "250 Message accepted for delivery"

    def recipients(self) -> list[str]:
        return [rcpt for rcpts, _ in self.messages for rcpt in rcpts]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def smtp_server():
    double = SmtpDouble()
    controller = Controller(double, hostname="127.0.0.1", port=free_port())
    controller.start()
    double.port = controller.port
    try:
        yield double
    finally:
        controller.stop()


@pytest.fixture
def smtp_settings(settings, smtp_server):
    """Django's email framework pointed at the SMTP double, as EMAIL_HOST/EMAIL_PORT would."""
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST = smtp_server.host
    settings.EMAIL_PORT = smtp_server.port
    settings.EMAIL_HOST_USER = ""
    settings.EMAIL_HOST_PASSWORD = ""
    settings.EMAIL_USE_TLS = False
    settings.EMAIL_USE_SSL = False
    settings.EMAIL_TIMEOUT = 5
    return smtp_server


def subprocess_env(*, smtp_port: int, **extra: str) -> dict[str, str]:
    """Environment for a child process (a worker, a command) on the TEST database, sending to
    the SMTP double on `smtp_port`."""
    from tests.doubles.fixtures import test_process_env

    return test_process_env(
        EMAIL_HOST="127.0.0.1",
        EMAIL_PORT=str(smtp_port),
        EMAIL_USE_TLS="false",
        PYTHONUNBUFFERED="1",
        **extra,
    )


def bulk_abandoned_orgs(count: int, hours_ago: float) -> list:
    """Many abandoned orgs at once (signing up each one would make this test slow); their
    owners have verified their addresses."""
    from datetime import timedelta

    from django.db import connection
    from django.utils import timezone

    from voxanne.models import Organization, User

    orgs = Organization.objects.bulk_create(
        [Organization(clinic_name=f"Bulk {i}") for i in range(count)]
    )
    users = User.objects.bulk_create(
        [
            User(
                email=f"bulk-{org.id}@clinic.test",
                organization=org,
                email_verified_at=timezone.now(),
            )
            for org in orgs
        ]
    )
    for org, user in zip(orgs, users, strict=True):
        org.owner = user
    Organization.objects.bulk_update(orgs, ["owner"])
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO onboarding_onboardingevent "
            "(id, org_id, event_name, step_index, metadata, session_id, created_at) "
            "SELECT gen_random_uuid(), o, 'payment_viewed', 3, '{}', '', %s FROM unnest(%s::uuid[]) o",
            [timezone.now() - timedelta(hours=hours_ago), [org.id for org in orgs]],
        )
    return orgs
