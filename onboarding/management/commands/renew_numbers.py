"""python manage.py renew_numbers [--now ISO-8601]: one rental pass, a JSON summary."""

from __future__ import annotations

import json
from datetime import datetime

from django.core.management.base import BaseCommand

from onboarding.rental import run_rental_pass
from voxanne.management.arguments import instant
from voxanne.tenancy import system_context


class Command(BaseCommand):
    help = (
        "Run the numbers' monthly rental pass now (renew what is due, grace emails, release "
        "what ran out of grace) and print a JSON summary."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--now",
            type=instant,
            help="Run as of this instant (ISO-8601; naive means UTC). Default: now.",
        )

    def handle(self, *args, now: datetime | None = None, **options):
        with system_context("renew_numbers command"):
            summary = run_rental_pass(now=now)
        self.stdout.write(json.dumps(summary.as_dict()))
