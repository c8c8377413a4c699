"""Settings fail loudly: a mistyped variable stops start-up instead of quietly meaning false."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from voxanne.settings import envbool, envint

ROOT = Path(__file__).resolve().parents[2]


def start_django(
    code: str = "import django; django.setup()", **env: str
) -> subprocess.CompletedProcess:
    """`code` (`django.setup()`) in a fresh process with these variables on top of the test
    run's."""
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "voxanne.settings", **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_django_starts_with_a_correctly_spelled_setting():
    started = start_django(DJANGO_SECURE_COOKIES="true", EMAIL_USE_TLS="0")
    assert started.returncode == 0, started.stderr


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("DJANGO_SECURE_COOKIES", "ture"),
        ("DJANGO_SSL_REDIRECT", "enabled"),
        ("EMAIL_USE_TLS", "maybe"),
        ("EMAIL_PORT", "25x"),
        ("DJANGO_HSTS_SECONDS", "one year"),
    ],
)
def test_a_mistyped_setting_stops_start_up_naming_the_variable(name, value):
    started = start_django(**{name: value})
    assert started.returncode != 0
    assert "ImproperlyConfigured" in started.stderr
    assert name in started.stderr and repr(value) in started.stderr


def test_the_old_email_url_stops_start_up_instead_of_being_ignored():
    started = start_django(EMAIL_URL="smtp://mail.example.test:25")
    assert started.returncode != 0
    assert "EMAIL_URL is no longer read" in started.stderr


@pytest.mark.parametrize("value", ["1", "true", "True", " YES ", "on"])
def test_true_spellings(monkeypatch, value):
    monkeypatch.setenv("SOME_FLAG", value)
    assert envbool("SOME_FLAG", False) is True


@pytest.mark.parametrize("value", ["0", "false", "FALSE", "no", "off"])
def test_false_spellings(monkeypatch, value):
    monkeypatch.setenv("SOME_FLAG", value)
    assert envbool("SOME_FLAG", True) is False


def test_unset_or_empty_is_the_default(monkeypatch):
    monkeypatch.delenv("SOME_FLAG", raising=False)
    assert envbool("SOME_FLAG", True) is True
    monkeypatch.setenv("SOME_FLAG", "")
    assert envbool("SOME_FLAG", False) is False
    assert envint("SOME_FLAG", 7) == 7


def test_anything_else_is_refused(monkeypatch):
    monkeypatch.setenv("SOME_FLAG", "ture")
    with pytest.raises(ImproperlyConfigured, match="SOME_FLAG"):
        envbool("SOME_FLAG", False)


@pytest.mark.parametrize(("value", "expected"), [("", "5"), ("3", "3"), ("0", "None")])
def test_prepare_threshold_comes_from_the_environment_and_0_prepares_none(value, expected):
    shown = start_django(
        "from django.conf import settings; "
        "print(settings.DATABASES['default']['OPTIONS']['prepare_threshold'])",
        DATABASE_PREPARE_THRESHOLD=value,
    )
    assert shown.stdout.strip() == expected, shown.stderr
