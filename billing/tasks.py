"""Billing's Celery tasks: thin wrappers around service functions, safe to run twice."""

from __future__ import annotations

import logging

from celery import shared_task

from voxanne.tenancy import system_context

logger = logging.getLogger("billing.reconciliation")


@shared_task(name="billing.reconcile_wallets", ignore_result=True)
def reconcile_wallets() -> int:
    """Beat, daily: check every wallet against its ledger; log an error per mismatch.

    Returns the number of mismatched wallets (0 when the books balance).
    """
    from billing.reconciliation import reconcile_wallets as reconcile

    with system_context("reconcile wallets"):
        report = reconcile()
    for mismatch in report.mismatches:
        logger.error(
            "wallet does not match its ledger",
            extra={
                "org_id": mismatch.org_id,
                "wallet_id": mismatch.wallet_id,
                "balance_pence": mismatch.balance_pence,
                "ledger_sum_pence": mismatch.ledger_sum_pence,
                "problems": list(mismatch.problems),
            },
        )
    logger.info(
        "wallets reconciled",
        extra={"wallets": report.wallets, "mismatched": len(report.mismatches)},
    )
    return len(report.mismatches)
