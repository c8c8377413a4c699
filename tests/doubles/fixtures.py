"""Pytest fixtures: Twilio and Vapi doubles, with the settings pointing at them."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from sandbox.twilio import TwilioDouble
from sandbox.vapi import VapiDouble


@dataclass
class Providers:
    twilio: TwilioDouble
    vapi: VapiDouble

    def env(self) -> dict[str, str]:
        return {**self.twilio.env(), **self.vapi.env()}

    def calls(self) -> int:
        return sum(self.twilio.calls.values()) + sum(self.vapi.calls.values())


@pytest.fixture
def providers(settings):
    """Both doubles running on 127.0.0.1, and the settings of the app pointing at them."""
    twilio = TwilioDouble().start()
    vapi = VapiDouble(twilio=twilio).start()
    for name, value in {**twilio.env(), **vapi.env()}.items():
        setattr(settings, name, value)
    settings.PROVISION_COUNTRY = "US"
    settings.PROVIDER_TIMEOUT_SECONDS = 5
    try:
        yield Providers(twilio=twilio, vapi=vapi)
    finally:
        vapi.stop()
        twilio.stop()


def assert_twilio_holds_only_recorded_subaccounts(org, providers: Providers) -> None:
    """Nothing orphaned at Twilio: every subaccount the double holds is one we recorded."""
    from onboarding.models import TwilioSubaccount

    recorded = TwilioSubaccount.objects.filter(org=org).values_list("account_sid", flat=True)
    assert {a["sid"] for a in providers.twilio.subaccounts()} == set(recorded)


def lapse_leases() -> int:
    """Time passes: every active provisioning attempt's lease lapses (its driver is gone)."""
    from datetime import timedelta

    from django.utils import timezone

    from onboarding.models import ACTIVE_ATTEMPT_STATES, ProvisioningAttempt

    return ProvisioningAttempt.objects.filter(state__in=ACTIVE_ATTEMPT_STATES).update(
        lease_expires_at=timezone.now() - timedelta(seconds=1)
    )


WORKER = Path(__file__).resolve().parents[1] / "onboarding" / "provision_worker.py"


def test_database_url() -> str:
    """A URL for the test database (what this process's Django connection points at).

    DATABASE_URL with the test database's name: its query keeps what the settings hold outside
    HOST/PORT (the embedded server's `?host=<socket dir>`).
    """
    from django.db import connection

    parts = urlsplit(os.environ["DATABASE_URL"])
    return urlunsplit(parts._replace(path=f"/{connection.settings_dict['NAME']}"))


test_database_url.__test__ = False  # a helper, not a test


def test_process_env(**overrides: str) -> dict[str, str]:
    """Environment for a child process (gunicorn, a worker, a command) on the test database."""
    env = {**os.environ, "DATABASE_URL": test_database_url(), **overrides}
    env.pop("TEST_DATABASE_NAME", None)
    return env


test_process_env.__test__ = False


def run_workers(orgs, providers: Providers, fault_at: str) -> list[subprocess.CompletedProcess]:
    """One real worker process per org, in parallel, each provisioning that org's number
    against the test database and the doubles, dying (exit 137) at step `fault_at`."""
    env = test_process_env(**providers.env(), PROVIDER_TIMEOUT_SECONDS="5", LOG_LEVEL="WARNING")
    workers = [
        subprocess.Popen(
            [sys.executable, str(WORKER), str(org.pk), fault_at],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for org in orgs
    ]
    done = []
    try:
        for worker in workers:
            out, err = worker.communicate(timeout=60)
            done.append(subprocess.CompletedProcess(worker.args, worker.returncode, out, err))
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
    return done
