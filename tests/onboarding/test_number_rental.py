"""The number's monthly rental: renewal on the anniversary, grace emails, release after grace
(through provisioning's undo), top-ups during grace, support extending grace, and the API.

Time is a parameter: each pass runs `--now` (or `now=`) some months ahead; nothing sleeps."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from django.contrib.admin.models import LogEntry
from django.core import mail
from django.core.management import call_command
from django.db import transaction
from django.utils import timezone

from billing.models import EntryType, LedgerEntry, Wallet
from billing.services import credit, freeze_wallet
from onboarding.models import ManagedPhoneNumber, NoticeKind, NumberNotice, add_months
from onboarding.rental import rental_key, run_rental_pass
from onboarding.tasks import reconcile_provisioning
from sandbox.server import Reply
from tests.billing import conftest as billing_fixtures
from tests.billing.conftest import new_topup
from tests.doubles import fixtures
from tests.doubles.fixtures import test_process_env
from tests.factories import auth_header, make_org, make_support_user
from voxanne.tenancy import system_context

providers = fixtures.providers
stripe_double = billing_fixtures.stripe_double
ROOT = Path(__file__).resolve().parents[2]
NUMBER_URL = "/api/onboarding/number"
VAPI_DOWN = Reply(503, {"message": "Service Unavailable", "statusCode": 503})


def provisioned_org(api, pence: int = 5000, name: str = "Smile Dental"):
    """A clinic that bought its number through the API (the charge paid the first month)."""
    org = make_org(name)
    if pence:
        credit(org=org, amount_pence=pence, type=EntryType.TOPUP, idempotency_key=f"t-{org.pk}")
    response = api.generic(
        "POST",
        "/api/onboarding/provision-number",
        "{}",
        content_type="application/json",
        **auth_header(org),
    )
    assert response.status_code == 200, response.content
    return org, ManagedPhoneNumber.objects.get(org=org)


def balance(org) -> int:
    return Wallet.objects.get(org=org).balance_pence


def rentals(org) -> list[LedgerEntry]:
    return list(
        LedgerEntry.objects.filter(org=org, type=EntryType.NUMBER_RENTAL).order_by("sequence")
    )


def number_api(api, org):
    return api.get(NUMBER_URL, **auth_header(org))


def day(number, days: float, hours: float = 1):
    """`days` after the number's paid_until (plus an hour: the daily pass runs after it)."""
    return number.paid_until + timedelta(days=days, hours=hours)


def run(now) -> dict:
    with system_context("test pass"):
        return run_rental_pass(now=now).as_dict()


# --- Renewal -----------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_provisioning_charge_pays_the_first_month(api, providers):
    org, number = provisioned_org(api)
    assert number.months_paid == 1
    assert number.paid_until == add_months(number.rental_started_at, 1)
    body = number_api(api, org).json()
    assert body["number"] == number.phone_number
    assert body["status"] == "active" and body["grace_until"] is None
    assert run(number.paid_until - timedelta(minutes=1))["months_charged"] == 0
    assert rentals(org) == []


@pytest.mark.django_db
def test_walking_months_charges_each_anniversary_once_with_its_period_key(api, providers):
    org, number = provisioned_org(api, pence=5000)
    start = number.rental_started_at
    for month in (1, 2, 3):
        anniversary = add_months(start, month)
        assert run(anniversary + timedelta(hours=2))["months_charged"] == 1
        assert run(anniversary + timedelta(hours=3))["months_charged"] == 0  # same day again
    keys = [e.idempotency_key for e in rentals(org)]
    assert keys == [
        f"number-rental:{number.phone_number}:{add_months(start, m):%Y-%m}" for m in (1, 2, 3)
    ]
    assert [e.amount_pence for e in rentals(org)] == [-1000] * 3
    assert balance(org) == 5000 - 1000 - 3000
    number.refresh_from_db()
    assert number.months_paid == 4 and number.paid_until == add_months(start, 4)


@pytest.mark.django_db
def test_a_pass_that_missed_months_charges_each_month_once(api, providers):
    org, number = provisioned_org(api, pence=5000)
    summary = run(add_months(number.rental_started_at, 3) + timedelta(hours=1))
    assert summary["months_charged"] == 3
    assert len({e.idempotency_key for e in rentals(org)}) == 3


@pytest.mark.django_db(transaction=True)
def test_rental_on_the_anniversary_once_under_four_overlapping_runs(api, providers):
    org, number = provisioned_org(api, pence=5000)
    now = (number.paid_until + timedelta(hours=1)).isoformat()
    env = test_process_env(
        **providers.env(),
        EMAIL_BACKEND="django.core.mail.backends.locmem.EmailBackend",
        LOG_LEVEL="WARNING",
    )
    runs = [
        subprocess.Popen(
            [sys.executable, "manage.py", "renew_numbers", "--now", now],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    summaries = []
    for proc in runs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        summaries.append(json.loads(out.strip().splitlines()[-1]))
    assert sum(s["months_charged"] for s in summaries) == 1
    assert [e.idempotency_key for e in rentals(org)] == [rental_key(number, number.paid_until)]
    assert balance(org) == 5000 - 1000 - 1000
    number.refresh_from_db()
    assert number.months_paid == 2 and number.grace_until is None


# --- Grace --------------------------------------------------------------------------------


@pytest.mark.django_db
def test_grace_emails_go_on_days_0_3_and_6_each_once(api, providers):
    org, number = provisioned_org(api, pence=1000)  # nothing left for month 2
    sent_by_day = {}
    for d in range(7):
        mail.outbox.clear()
        run(day(number, d))
        run(day(number, d, hours=5))  # a second pass the same day sends nothing more
        sent_by_day[d] = [m.subject for m in mail.outbox]
    assert [d for d, subjects in sent_by_day.items() if subjects] == [0, 3, 6]
    assert all(len(subjects) == 1 for subjects in sent_by_day.values() if subjects)
    assert "could not renew" in sent_by_day[0][0]
    assert "Last day" in sent_by_day[6][0]
    kinds = set(NumberNotice.objects.filter(number=number).values_list("kind", "state"))
    assert kinds == {(k, "sent") for k in ("grace_day_0", "grace_day_3", "grace_day_6")}
    body = number_api(api, org).json()
    assert body["status"] == "grace"
    number.refresh_from_db()
    assert number.grace_until == number.paid_until + timedelta(days=7)
    assert rentals(org) == [] and balance(org) == 0


@pytest.mark.django_db
def test_a_grace_email_has_text_and_html_with_the_number_and_the_deadline(api, providers):
    org, number = provisioned_org(api, pence=1000)
    run(day(number, 0))
    (message,) = mail.outbox
    assert message.to == [org.owner.email]
    html, mime = message.alternatives[0]
    assert mime == "text/html"
    for part in (message.body, html):
        assert number.phone_number in part and "£10.00" in part


@pytest.mark.django_db
def test_release_after_grace_leaves_nothing_at_twilio_or_vapi_and_charges_nothing_more(
    api, providers
):
    org, number = provisioned_org(api, pence=1000)
    for d in range(7):
        run(day(number, d))
    assert providers.twilio.owned_numbers() and providers.vapi.imported_numbers()
    mail.outbox.clear()
    summary = run(day(number, 7))
    assert summary["released"] == 1
    assert providers.twilio.owned_numbers() == []
    assert providers.vapi.imported_numbers() == []
    number.refresh_from_db()
    assert number.status == "released" and number.provider_released_at is not None
    assert [m.subject for m in mail.outbox] == ["Your Voxanne number has been released"]
    credit(org=org, amount_pence=5000, type=EntryType.TOPUP, idempotency_key="late-money")
    for months in range(1, 4):
        run(add_months(number.paid_until, months) + timedelta(days=1))
    assert rentals(org) == [] and balance(org) == 5000
    assert len(mail.outbox) == 1
    assert number_api(api, org).json()["status"] == "released"


@pytest.mark.django_db
def test_a_release_vapi_refuses_is_retried_by_the_reconciler_until_nothing_is_left(
    api, providers, settings
):
    org, number = provisioned_org(api, pence=1000)
    run(day(number, 0))
    providers.vapi.fail("delete", VAPI_DOWN, times=-1)
    run(day(number, 7))
    number.refresh_from_db()
    assert number.status == "released" and number.provider_released_at is None
    assert providers.vapi.imported_numbers()  # still there: Vapi said no three times
    assert providers.vapi.calls["delete"] == 3
    providers.vapi.heal()
    reconcile_provisioning()  # too soon: the retry waits a minute
    assert providers.vapi.calls["delete"] == 3
    ManagedPhoneNumber.objects.filter(pk=number.pk).update(  # a minute passes
        release_lease_until=number.released_at - timedelta(days=60)
    )
    reconcile_provisioning()  # the every-minute reconciler finishes the release
    number.refresh_from_db()
    assert number.provider_released_at is not None
    assert providers.twilio.owned_numbers() == [] and providers.vapi.imported_numbers() == []


@pytest.mark.django_db
def test_a_top_up_during_grace_renews_at_the_next_pass(api, providers):
    org, number = provisioned_org(api, pence=1000)
    due = number.paid_until
    run(day(number, 0))
    run(day(number, 3))
    credit(org=org, amount_pence=2500, type=EntryType.TOPUP, idempotency_key="rescue")
    summary = run(day(number, 4))
    assert summary["renewed"] == 1
    number.refresh_from_db()
    assert number.grace_until is None and number.paid_until == add_months(due, 1)
    assert [e.idempotency_key for e in rentals(org)] == [
        f"number-rental:{number.phone_number}:{due:%Y-%m}"
    ]
    assert balance(org) == 1500
    mail.outbox.clear()
    run(day(number, 7))  # the old grace end passes: nothing is released or sent
    assert providers.vapi.imported_numbers() and mail.outbox == []
    assert number_api(api, org).json()["status"] == "active"


@pytest.mark.django_db
def test_a_paid_stripe_top_up_during_grace_renews_straight_away(
    api, providers, stripe_double, django_capture_on_commit_callbacks, celery_eager
):
    org, number = provisioned_org(api, pence=1000)
    # A month and a day have really passed (the renewal after a top-up runs at the real now).
    started = number.rental_started_at - timedelta(days=32)
    ManagedPhoneNumber.objects.filter(pk=number.pk).update(
        rental_started_at=started, paid_until=add_months(started, 1)
    )
    assert run(timezone.now())["in_grace"] == 1
    topup = new_topup(api, org, 2500)
    with django_capture_on_commit_callbacks(execute=True):
        stripe_double.pay(topup.stripe_session_id)
    number.refresh_from_db()
    assert number.grace_until is None and number.months_paid == 2
    assert balance(org) == 2500 - 1000


@pytest.mark.django_db
def test_a_frozen_wallet_does_not_pay_the_rental(api, providers):
    org, number = provisioned_org(api, pence=5000)
    with transaction.atomic():
        freeze_wallet(org=org, reason="dispute")
    assert run(day(number, 0))["in_grace"] == 1
    assert rentals(org) == []


# --- Support and the API ------------------------------------------------------------------


@pytest.mark.django_db
def test_support_extends_grace_with_a_reason_once_per_form(api, providers, client):
    org, number = provisioned_org(api, pence=1000)
    run(day(number, 0))
    number.refresh_from_db()
    first_end = number.grace_until
    url = f"/admin/onboarding/managedphonenumber/{number.pk}/extend-grace/"
    client.force_login(make_support_user(permissions=("onboarding.view_managedphonenumber",)))
    assert client.get(url).status_code == 403
    client.force_login(
        make_support_user(
            permissions=("onboarding.view_managedphonenumber", "onboarding.extend_grace")
        )
    )
    page = client.get(url)
    assert page.status_code == 200
    seen = page.context["form"].initial["seen_grace_until"]
    form = {"days": "5", "reason": "Card replaced, paying Monday", "confirm": "on"}
    response = client.post(url, {**form, "seen_grace_until": seen})
    assert response.status_code == 302
    number.refresh_from_db()
    assert number.grace_until == first_end + timedelta(days=5)
    assert number.grace_extended_reason == "Card replaced, paying Monday"
    again = client.post(url, {**form, "seen_grace_until": seen})  # the same form resubmitted
    assert again.status_code == 200 and "submitted twice" in again.content.decode()
    number.refresh_from_db()
    assert number.grace_until == first_end + timedelta(days=5)
    assert LogEntry.objects.filter(change_message__contains="Card replaced").count() == 2
    assert run(first_end + timedelta(hours=1))["released"] == 0
    assert run(number.grace_until + timedelta(hours=1))["released"] == 1


@pytest.mark.django_db
def test_admin_shows_the_next_renewal_grace_and_rental_history(api, providers, client):
    org, number = provisioned_org(api, pence=1000)
    run(day(number, 0))
    client.force_login(make_support_user(superuser=True))
    html = client.get(f"/admin/onboarding/managedphonenumber/{number.pk}/change/").content
    html = html.decode()
    assert "next renewal" in html.lower() and f"{number.paid_until:%d %b %Y}" in html
    assert "unpaid: released at" in html and "extend grace" in html
    assert NoticeKind.GRACE_DAY_0.label in html


@pytest.mark.django_db
def test_number_api_needs_a_token_and_a_number(api):
    assert api.get(NUMBER_URL).status_code == 401
    response = number_api(api, make_org())
    assert response.status_code == 404
    assert response.json()["error"] == "This clinic has no phone number yet."


@pytest.mark.django_db
def test_renew_numbers_command_prints_a_json_summary(api, providers, capsys):
    org, number = provisioned_org(api)
    call_command("renew_numbers", "--now", (number.paid_until + timedelta(hours=1)).isoformat())
    summary = json.loads(capsys.readouterr().out)
    assert summary["renewed"] == 1 and summary["months_charged"] == 1
