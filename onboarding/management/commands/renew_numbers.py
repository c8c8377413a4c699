"""python manage.py renew_numbers [--now ISO-8601]: one rental pass, a JSON summary."""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime

from django.core.management.base import BaseCommand
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from onboarding.rental import run_rental_pass
from voxanne.tenancy import system_context


def _instant(value: str) -> datetime:
    parsed = parse_datetime(value)
    if parsed is None:
        raise argparse.ArgumentTypeError(f"expected an ISO-8601 date and time, not {value!r}")
    if timezone.is_naive(parsed):
        parsed = parsed.replace(tzinfo=UTC)
    return parsed


class Command(BaseCommand):
    help = (
        "Run the numbers' monthly rental pass now (renew what is due, grace emails, release "
        "what ran out of grace) and print a JSON summary."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--now",
            type=_instant,
            help="Run as of this instant (ISO-8601; naive means UTC). Default: now.",
        )

    def handle(self, *args, now: datetime | None = None, **options):
        with system_context("renew_numbers command"):
            summary = run_rental_pass(now=now)
        self.stdout.write(json.dumps(summary.as_dict()))
