"""Voice's Celery tasks: thin wrappers around service functions, safe to run twice."""

from __future__ import annotations

import logging

from celery import shared_task

logger = logging.getLogger("voice.reconciliation")


@shared_task(name="voice.reconcile_calls", ignore_result=True)
def reconcile_calls() -> int:
    """Beat, every 15 minutes: bill the ended calls whose report never arrived.

    Returns how many calls it had to bill.
    """
    from voice.reconciliation import reconcile_calls as reconcile

    report = reconcile()
    logger.info(report.summary())
    return len(report.calls_billed)
