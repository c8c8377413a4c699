"""Bill ended Vapi calls whose report never arrived; route our numbers to our webhook (also
run every 15 minutes by beat)."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from voice import vapi
from voice.reconciliation import reconcile_calls


class Command(BaseCommand):
    help = (
        "List Vapi's calls of the lookback window (RECONCILE_CALLS_LOOKBACK_HOURS) for our "
        "clinics' numbers and bill every ended call that has no Call row, exactly once."
    )

    def handle(self, *args, **options):
        try:
            report = reconcile_calls()
        except vapi.VapiError as exc:
            raise CommandError(f"Vapi could not be asked: {exc.detail}") from None
        for call_id in report.calls_billed:
            self.stderr.write(f"REPAIRED: call {call_id} had no end-of-call-report; billed now")
        summary = report.summary()
        self.stdout.write(self.style.WARNING(summary) if report.calls_billed else summary)
