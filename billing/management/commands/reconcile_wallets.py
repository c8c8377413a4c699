"""Check every wallet against its ledger; exit non-zero on any mismatch (a daily job)."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from billing.models import format_pence
from billing.reconciliation import reconcile_wallets
from voxanne.tenancy import system_context


class Command(BaseCommand):
    help = "Check that every wallet's balance equals the sum of its ledger."

    def add_arguments(self, parser):
        parser.add_argument(
            "--batch-size", type=int, default=1000, help="wallets checked per query"
        )

    def handle(self, *args, batch_size: int, **options):
        if batch_size < 1:
            raise CommandError("--batch-size must be at least 1.")
        with system_context("reconcile_wallets command"):
            report = reconcile_wallets(batch_size=batch_size)
        for mismatch in report.mismatches:
            self.stderr.write(
                f"MISMATCH org {mismatch.org_id} wallet {mismatch.wallet_id}: "
                f"balance {format_pence(mismatch.balance_pence)}, "
                f"ledger sum {format_pence(mismatch.ledger_sum_pence)}: "
                + "; ".join(mismatch.problems)
            )
        summary = (
            f"Checked {report.wallets} wallets holding {format_pence(report.total_balance_pence)}: "
            f"{len(report.mismatches)} mismatched."
        )
        if not report.ok:
            raise CommandError(summary)
        self.stdout.write(self.style.SUCCESS(summary))
