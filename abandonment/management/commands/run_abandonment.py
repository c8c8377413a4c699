"""python manage.py run_abandonment [--now ISO-8601] [--dry-run]: one pass, a JSON summary."""

from __future__ import annotations

import json
from datetime import datetime

from django.core.management.base import BaseCommand

from abandonment import services
from voxanne.management.arguments import instant


class Command(BaseCommand):
    help = "Run one pass of the abandonment emails now and print a JSON summary."

    def add_arguments(self, parser):
        parser.add_argument(
            "--now",
            type=instant,
            help="Evaluate the thresholds as of this instant (ISO-8601; naive means UTC).",
        )
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="Send and write nothing; report what would be sent.",
        )

    def handle(self, *args, now: datetime | None = None, dry_run: bool = False, **options):
        summary = services.run_abandonment(now=now, dry_run=dry_run)
        self.stdout.write(json.dumps(summary.as_dict()))
