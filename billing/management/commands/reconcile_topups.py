"""Credit paid Checkout Sessions the ledger lacks; expire stale top-ups (also run hourly)."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from billing import stripe as payments
from billing.topups import reconcile_topups
from voxanne.tenancy import system_context


class Command(BaseCommand):
    help = (
        "List the Checkout Sessions and PaymentIntents of the last 72 hours at Stripe, credit "
        "any paid top-up or auto-recharge the ledger lacks, retry unanswered recharges, mark "
        "top-ups pending for over a day expired, send unsent receipts."
    )

    def handle(self, *args, **options):
        try:
            with system_context("reconcile_topups command"):
                report = reconcile_topups()
        except payments.PaymentProviderError as exc:
            raise CommandError(f"Stripe could not be asked: {exc.detail}") from None
        for session_id in report.repaired:
            self.stderr.write(f"REPAIRED: paid checkout session {session_id} was not credited")
        for intent_id in report.recharges_repaired:
            self.stderr.write(f"REPAIRED: paid auto-recharge {intent_id} was not credited")
        summary = (
            f"Checked {report.sessions_seen} checkout sessions: {len(report.repaired)} repaired, "
            f"{report.expired} stale top-ups expired, {report.receipts_sent} receipts sent. "
            f"Checked {report.payment_intents_seen} payment intents: "
            f"{len(report.recharges_repaired)} auto-recharges repaired, "
            f"{report.recharges_resumed} unanswered recharges retried."
        )
        repaired = report.repaired or report.recharges_repaired
        self.stdout.write(self.style.WARNING(summary) if repaired else summary)
