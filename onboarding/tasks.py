"""Onboarding's Celery tasks: thin wrappers around service functions, safe to run twice."""

from __future__ import annotations

from celery import shared_task

from voxanne.tenancy import system_context


@shared_task(name="onboarding.reconcile_provisioning", ignore_result=True)
def reconcile_provisioning() -> int:
    """Beat, every minute: finish or undo provisioning attempts whose driver died."""
    from onboarding.reconciler import reconcile_stuck_attempts
    from onboarding.rental import finish_releases

    with system_context("reconcile provisioning"):
        ended = len(reconcile_stuck_attempts())
        # Numbers released after their grace whose Vapi/Twilio side is not gone yet.
        return ended + finish_releases()


@shared_task(name="onboarding.renew_numbers", ignore_result=True)
def renew_numbers() -> dict:
    """Beat, daily: the numbers' monthly rental pass (renew, grace emails, release)."""
    from onboarding.rental import run_rental_pass

    with system_context("number rental"):
        return run_rental_pass().as_dict()


@shared_task(name="onboarding.renew_number_for_org", ignore_result=True)
def renew_number_for_org(org_id: str) -> str | None:
    """After a paid top-up: retry the renewal of the org's number in grace."""
    from onboarding.rental import renew_for_org

    with system_context("number rental"):
        result = renew_for_org(org_id)
    return result.outcome if result else None
