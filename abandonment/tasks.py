"""Celery tasks of the abandonment emails: thin wrappers around the service."""

from __future__ import annotations

from celery import shared_task

from abandonment import services


# acks_late + reject_on_worker_lost: a worker that dies mid-pass gets the message redelivered.
# That is safe because a pass is idempotent (claims, unique rows, keyed credits).
@shared_task(acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def run_abandonment_pass() -> dict[str, object]:
    """One pass of the abandonment job; returns its summary."""
    return services.run_abandonment().as_dict()
