"""The reconciler's schedule and entry points (beat task, command, admin action), and support's
read-only view of provisioning, which never shows a provider token."""

from __future__ import annotations

import json
import logging

import pytest
from django.contrib.admin.models import LogEntry
from django.core.management import call_command
from django_celery_beat.models import PeriodicTask

from billing.models import EntryType, Wallet
from billing.services import credit
from onboarding.models import AttemptState, ProvisioningAttempt, TwilioSubaccount
from onboarding.tasks import reconcile_provisioning
from sandbox.server import Reply
from tests.doubles import fixtures
from tests.doubles.fixtures import lapse_leases
from tests.factories import auth_header, make_org, make_support_user

pytestmark = pytest.mark.django_db
providers = fixtures.providers

URL = "/api/onboarding/provision-number"


def funded_org(name: str = "Smile Dental"):
    org = make_org(name)
    credit(org=org, amount_pence=5000, type=EntryType.TOPUP, idempotency_key="topup")
    return org


def provision(api, org):
    return api.generic(
        "POST", URL, json.dumps({}), content_type="application/json", **auth_header(org)
    )


def leave_a_number_to_release(api, org, providers) -> ProvisioningAttempt:
    """The import fails and so does every release try: refunded, but the number is still ours."""
    providers.vapi.fail("import", Reply(500, {"message": "boom"}))
    providers.twilio.fail("release", Reply(503, {"code": 20503, "message": "down"}), times=3)
    assert provision(api, org).status_code == 503
    providers.twilio.heal()
    attempt = ProvisioningAttempt.objects.get(org=org)
    assert attempt.state == AttemptState.COMPENSATING
    return attempt


def test_a_data_migration_schedules_the_reconciler_every_minute():
    from voxanne.celery import app

    task = PeriodicTask.objects.get(task="onboarding.reconcile_provisioning")
    assert task.enabled
    assert (task.interval.every, task.interval.period) == (1, "minutes")
    app.loader.import_default_modules()
    assert "onboarding.reconcile_provisioning" in app.tasks


def test_the_beat_task_drives_stuck_attempts_to_an_end_and_is_safe_to_run_twice(api, providers):
    org = funded_org()
    attempt = leave_a_number_to_release(api, org, providers)
    # The request gave the lease up when its undo did not finish: the next run takes it.
    assert reconcile_provisioning.apply().get() == 1
    assert reconcile_provisioning.apply().get() == 0

    attempt.refresh_from_db()
    assert attempt.state == AttemptState.FAILED
    assert providers.twilio.owned_numbers() == []
    assert Wallet.objects.get(org=org).balance_pence == 5000


def test_the_command_reconciles_one_attempt(api, providers, capsys):
    org = funded_org()
    attempt = leave_a_number_to_release(api, org, providers)
    lapse_leases()
    call_command("reconcile_provisioning", "--attempt", str(attempt.pk))
    assert f"{attempt.pk} refunded" in capsys.readouterr().out
    assert providers.twilio.owned_numbers() == []


def test_support_sees_attempts_read_only_and_can_run_the_reconciler_for_one(client, api, providers):
    org = funded_org()
    attempt = leave_a_number_to_release(api, org, providers)
    lapse_leases()
    support = make_support_user(superuser=True)
    client.force_login(support)

    listing = client.get("/admin/onboarding/provisioningattempt/")
    detail = client.get(f"/admin/onboarding/provisioningattempt/{attempt.pk}/change/")
    assert listing.status_code == detail.status_code == 200
    assert b"Twilio 503" in detail.content or b"503" in detail.content  # the provider's text
    assert b'name="_save"' not in detail.content  # read-only

    response = client.post(
        "/admin/onboarding/provisioningattempt/",
        {"action": "run_reconciler", "_selected_action": [str(attempt.pk)]},
        follow=True,
    )

    assert response.status_code == 200
    assert b"refunded" in response.content
    attempt.refresh_from_db()
    assert attempt.state == AttemptState.FAILED and attempt.reconciled_at
    assert providers.twilio.owned_numbers() == []
    assert LogEntry.objects.filter(object_id=str(attempt.pk), user=support).exists()


def test_the_admin_action_leaves_an_attempt_that_is_still_being_driven_alone(
    client, api, providers
):
    org = funded_org()
    attempt = leave_a_number_to_release(api, org, providers)  # lease still running
    ProvisioningAttempt.objects.filter(pk=attempt.pk).update(
        lease_expires_at=attempt.created_at.replace(year=attempt.created_at.year + 1)
    )
    client.force_login(make_support_user(superuser=True))
    response = client.post(
        "/admin/onboarding/provisioningattempt/",
        {"action": "run_reconciler", "_selected_action": [str(attempt.pk)]},
        follow=True,
    )
    assert b"still being driven" in response.content
    assert ProvisioningAttempt.objects.get(pk=attempt.pk).state == AttemptState.COMPENSATING
    assert len(providers.twilio.owned_numbers()) == 1


def test_the_subaccount_token_is_never_shown_in_admin_nor_logged(client, api, providers, caplog):
    org = funded_org()
    with caplog.at_level(logging.DEBUG):
        assert provision(api, org).status_code == 200
    subaccount = TwilioSubaccount.objects.get(org=org)
    token = subaccount.auth_token
    assert token not in caplog.text
    assert token not in repr(subaccount) and token not in str(subaccount)
    client.force_login(make_support_user(superuser=True))
    for url in (
        f"/admin/voxanne/organization/{org.pk}/change/",
        "/admin/onboarding/provisioningattempt/",
        "/admin/onboarding/managedphonenumber/",
    ):
        page = client.get(url)
        assert page.status_code == 200, url
        assert token.encode() not in page.content
        assert subaccount.auth_token_encrypted.encode() not in page.content
    org_page = client.get(f"/admin/voxanne/organization/{org.pk}/change/").content
    assert subaccount.account_sid.encode() in org_page  # the panels are there
