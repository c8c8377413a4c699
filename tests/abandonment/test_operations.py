"""Running the job: the command, the beat schedule, support's admin, and query counts."""

from __future__ import annotations

import io
import json
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from abandonment.models import AbandonmentEmail, OptOut
from abandonment.services import run_abandonment
from tests.abandonment.conftest import bulk_abandoned_orgs
from tests.factories import make_abandoned_org, make_org, make_support_user, owner_of

pytestmark = pytest.mark.django_db


def run_command(*args: str) -> dict:
    out = io.StringIO()
    call_command("run_abandonment", *args, stdout=out)
    return json.loads(out.getvalue())


def test_command_prints_a_json_summary_and_now_evaluates_thresholds_then(mailoutbox):
    make_abandoned_org(hours_ago=2)
    dry = run_command("--dry-run")
    assert dry["sent"] == {"1": 1, "2": 0, "3": 0} and dry["dry_run"] is True
    assert mailoutbox == []

    later = (timezone.now() + timedelta(hours=47)).isoformat()
    summary = run_command("--now", later)
    assert {k: summary[k] for k in ("candidates", "sent", "credited", "failed")} == {
        "candidates": 1,
        "sent": {"1": 0, "2": 0, "3": 1},
        "credited": 1,
        "failed": 0,
    }
    assert run_command()["sent"] == {"1": 0, "2": 0, "3": 0}


def test_command_refuses_a_malformed_now():
    with pytest.raises(CommandError):
        call_command("run_abandonment", "--now", "yesterday-ish", stdout=io.StringIO())


def test_beat_schedule_runs_the_task_every_15_minutes():
    task = PeriodicTask.objects.get(task="abandonment.tasks.run_abandonment_pass")
    assert task.enabled
    assert (task.interval.every, task.interval.period) == (15, IntervalSchedule.MINUTES)


def test_beat_schedule_migration_keeps_what_staff_changed():
    """Re-running the data migration neither duplicates the task nor undoes a pause."""
    import importlib

    from django.apps import apps

    migration = importlib.import_module("abandonment.migrations.0003_beat_schedule")
    task = PeriodicTask.objects.get(name=migration.TASK_NAME)
    task.enabled = False
    task.save()
    migration.create_schedule(apps, None)
    assert PeriodicTask.objects.filter(task=migration.TASK).count() == 1
    assert PeriodicTask.objects.get(name=migration.TASK_NAME).enabled is False


def test_admin_shows_the_clinics_emails_and_opt_out_read_only(client, mailoutbox):
    org = make_abandoned_org(hours_ago=50, clinic_name="Admin Dental")
    run_abandonment()
    OptOut.objects.create(org=org, email=owner_of(org).email)
    client.force_login(make_support_user(superuser=True))

    page = client.get(f"/admin/voxanne/organization/{org.id}/change/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "We added £10 to your account" in html
    assert "abandonment emails opt-out" in html.lower()
    assert owner_of(org).email in html
    assert 'name="abandonment_emails-0-state"' not in html  # read-only, no form fields

    listing = client.get("/admin/abandonment/abandonmentemail/?state__exact=sent")
    assert listing.status_code == 200 and "Admin Dental" in listing.content.decode()
    row = AbandonmentEmail.objects.get(org=org)
    assert client.get(f"/admin/abandonment/abandonmentemail/{row.id}/change/").status_code == 200
    assert client.get("/admin/abandonment/abandonmentemail/add/").status_code == 403

    beat = client.get("/admin/django_celery_beat/periodictask/")
    assert "Abandonment emails" in beat.content.decode()


@pytest.mark.parametrize("orgs", [50, 500])
def test_queries_per_run_do_not_grow_with_the_number_of_orgs(
    orgs, settings, mailoutbox, django_assert_max_num_queries
):
    settings.ABANDONMENT_SEND_CHUNK = 500
    make_org("Not abandoned")
    bulk_abandoned_orgs(orgs, hours_ago=30)
    with django_assert_max_num_queries(12):
        summary = run_abandonment()
    assert summary.sent["2"] == orgs
    assert len(mailoutbox) == orgs


def test_queries_grow_only_with_batches(settings, mailoutbox, django_assert_max_num_queries):
    settings.ABANDONMENT_BATCH_SIZE = 100
    settings.ABANDONMENT_SEND_CHUNK = 50
    bulk_abandoned_orgs(300, hours_ago=2)
    # Per batch of 100: one candidate query, and a claim plus a record per chunk of 50.
    with django_assert_max_num_queries(3 * (1 + 2 * 2) + 6):
        assert run_abandonment().sent["1"] == 300
