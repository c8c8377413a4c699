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


@shared_task(name="billing.send_receipts", ignore_result=True)
def send_receipts() -> int:
    """Beat, every minute: the receipts of paid top-ups not yet mailed, each once."""
    from billing.topups import send_receipts as send

    with system_context("top-up receipts"):
        return send()


@shared_task(name="billing.reconcile_topups", ignore_result=True)
def reconcile_topups() -> int:
    """Beat, hourly: credit paid Checkout Sessions the ledger lacks, expire stale top-ups.

    Returns the number of top-ups it had to repair.
    """
    from billing.topups import reconcile_topups as reconcile

    with system_context("reconcile top-ups"):
        report = reconcile()
    logger.info(
        "top-ups reconciled",
        extra={
            "sessions": report.sessions_seen,
            "repaired": len(report.repaired),
            "expired": report.expired,
            "receipts_sent": report.receipts_sent,
        },
    )
    return len(report.repaired)


@shared_task(name="billing.balance_dropped", ignore_result=True)
def balance_dropped(org_id: str) -> str:
    """After a debit left the balance low: an auto-recharge if one is due (or a stale one
    retried, same Stripe key), then the low-balance email once per crossing (not while a
    recharge is in flight). Returns the recharge's result."""
    from billing.alerts import send_low_balance_email
    from billing.recharge import recharge_if_needed

    with system_context("balance dropped"):
        outcome = recharge_if_needed(org_id)
        send_low_balance_email(org_id)
    return outcome.result


@shared_task(name="billing.send_recharge_paused_email", ignore_result=True)
def send_recharge_paused_email(attempt_id: str) -> bool:
    """The owner's email when a refused auto-recharge paused it, once per attempt."""
    from billing.recharge import send_paused_email

    with system_context("recharge paused email"):
        return send_paused_email(attempt_id)
