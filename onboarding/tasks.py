"""Onboarding's Celery tasks: thin wrappers around service functions, safe to run twice."""

from __future__ import annotations

from celery import shared_task

from voxanne.tenancy import system_context


@shared_task(name="onboarding.reconcile_provisioning", ignore_result=True)
def reconcile_provisioning() -> int:
    """Beat, every minute: finish or undo provisioning attempts whose driver died."""
    from onboarding.reconciler import reconcile_stuck_attempts

    with system_context("reconcile provisioning"):
        return len(reconcile_stuck_attempts())
