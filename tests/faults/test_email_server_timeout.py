"""The email server accepts connections and then says nothing (a hung SMTP service).

The abandonment pass gives up at EMAIL_TIMEOUT, records nothing as sent and credits nothing;
the next pass, with the server healthy again, sends and credits exactly once.
"""

from __future__ import annotations

import socket
import threading
import time

import pytest

from abandonment.models import AbandonmentEmail
from abandonment.services import run_abandonment
from billing.models import EntryType, LedgerEntry
from tests.abandonment import conftest as abandonment
from tests.factories import make_abandoned_org, owner_of

pytestmark = pytest.mark.django_db
smtp_server, smtp_settings = abandonment.smtp_server, abandonment.smtp_settings


@pytest.fixture
def silent_smtp():
    """A TCP server that accepts every connection and never sends a greeting."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1], accepted
    finally:
        stop.set()
        thread.join(5)
        for conn in accepted:
            conn.close()
        listener.close()


def test_a_hung_email_server_times_out_sends_and_credits_nothing_then_recovers(
    settings, smtp_settings, silent_smtp
):
    port, accepted = silent_smtp
    org = make_abandoned_org(hours_ago=50)
    settings.EMAIL_PORT = port
    settings.EMAIL_TIMEOUT = 1

    began = time.monotonic()
    summary = run_abandonment()
    took = time.monotonic() - began

    assert accepted, "the pass never reached the hung server"
    assert took < 15  # bounded by the timeout, not hung with the server
    assert summary.sent == {"1": 0, "2": 0, "3": 0}
    assert not AbandonmentEmail.objects.filter(org=org).exists()
    assert not LedgerEntry.objects.filter(org=org, type=EntryType.BONUS).exists()

    settings.EMAIL_PORT = smtp_settings.port
    assert run_abandonment().sent["3"] == 1
    assert smtp_settings.recipients() == [owner_of(org).email]
    assert LedgerEntry.objects.filter(org=org, type=EntryType.BONUS).count() == 1
    assert run_abandonment().sent == {"1": 0, "2": 0, "3": 0}
