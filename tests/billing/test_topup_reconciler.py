"""The top-up reconciler (beat hourly, `manage.py reconcile_topups`), and receipts (beat every
minute)."""

from __future__ import annotations

import importlib
from datetime import timedelta
from io import StringIO

import pytest
from django.apps import apps as django_apps
from django.core import mail
from django.core.management import call_command
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from billing.models import TopUp
from billing.tasks import reconcile_topups as reconcile_topups_task
from billing.tasks import send_receipts
from billing.topups import reconcile_topups
from tests.billing.conftest import balance, new_topup, topup_credits
from tests.factories import make_org, owner_of

pytestmark = pytest.mark.django_db


def test_a_dropped_webhook_is_credited_once_by_the_reconciler(api, stripe_double, caplog):
    org = make_org()
    topup = new_topup(api, org, 4000)
    stripe_double.drop()
    stripe_double.pay(topup.stripe_session_id)
    out, err = StringIO(), StringIO()
    with caplog.at_level("ERROR", logger="billing.topups"):
        call_command("reconcile_topups", stdout=out, stderr=err)
    assert f"REPAIRED: paid checkout session {topup.stripe_session_id}" in err.getvalue()
    assert "1 repaired" in out.getvalue()
    assert any("RECONCILER REPAIR" in r.getMessage() for r in caplog.records)
    assert topup_credits(org) == [4000]
    assert TopUp.objects.get(pk=topup.pk).status == "paid"
    again = StringIO()
    call_command("reconcile_topups", stdout=again, stderr=StringIO())
    assert "0 repaired" in again.getvalue() and topup_credits(org) == [4000]


def test_the_reconciler_looks_back_72_hours_only(api, stripe_double):
    org = make_org()
    topup = new_topup(api, org)
    stripe_double.drop()
    stripe_double.pay(topup.stripe_session_id)
    stripe_double.sessions[topup.stripe_session_id]["created"] -= 73 * 3600
    assert reconcile_topups().sessions_seen == 0
    assert balance(org) == 0


def test_pending_topups_older_than_a_day_are_expired(api, stripe_double):
    org = make_org()
    old, fresh = new_topup(api, org), new_topup(api, org)
    TopUp.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(hours=25))
    report = reconcile_topups()
    assert report.expired == 1
    assert TopUp.objects.get(pk=old.pk).status == "expired"
    assert TopUp.objects.get(pk=fresh.pk).status == "pending"


def test_a_late_payment_after_our_expiry_is_still_credited(api, stripe_double):
    org = make_org()
    topup = new_topup(api, org)
    TopUp.objects.filter(pk=topup.pk).update(created_at=timezone.now() - timedelta(hours=25))
    reconcile_topups()
    stripe_double.pay(topup.stripe_session_id)
    assert TopUp.objects.get(pk=topup.pk).status == "paid" and balance(org) == 2500


def test_the_hourly_task_returns_the_repairs_and_its_schedule_is_data(api, stripe_double):
    org = make_org()
    topup = new_topup(api, org)
    stripe_double.drop()
    stripe_double.pay(topup.stripe_session_id)
    assert reconcile_topups_task() == 1
    schedule = importlib.import_module("billing.migrations.0005_reconcile_topups_schedule")
    schedule.create_schedule(django_apps, None)
    [task] = PeriodicTask.objects.filter(name=schedule.TASK_NAME)
    assert task.task == reconcile_topups_task.name
    assert (task.crontab.minute, task.crontab.hour) == ("17", "*")


def test_a_paid_topup_gets_one_receipt_with_amount_balance_and_stripe_link(
    api, stripe_double, settings
):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    org = make_org("Smile Dental")
    topup = new_topup(api, org, 2500)
    stripe_double.pay(topup.stripe_session_id)
    assert mail.outbox == []  # the webhook sends nothing itself
    assert send_receipts() == 1
    assert send_receipts() == 0
    assert reconcile_topups().receipts_sent == 0
    [message] = mail.outbox
    assert message.to == [owner_of(org).email]
    assert message.subject == "Receipt: £25.00 added to your Voxanne wallet"
    [charge_id] = stripe_double.charges
    for text in (message.body, message.alternatives[0][0]):
        assert "£25.00" in text and "New balance" in text
        assert f"{stripe_double.url}/receipts/{charge_id}" in text
    assert TopUp.objects.get(pk=topup.pk).receipt_url.endswith(charge_id)


def test_the_reconciler_sends_a_receipt_still_due(api, stripe_double, settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    topup = new_topup(api, make_org())
    stripe_double.pay(topup.stripe_session_id)
    assert reconcile_topups().receipts_sent == 1
    assert len(mail.outbox) == 1


def test_receipts_are_sent_every_minute_by_a_schedule_that_is_data(api):
    schedule = importlib.import_module("billing.migrations.0013_receipts")
    schedule.create_schedule(django_apps, None)
    [task] = PeriodicTask.objects.filter(name=schedule.TASK_NAME)
    assert task.task == send_receipts.name and task.enabled
    assert (task.interval.every, task.interval.period) == (1, "minutes")
