"""reconcile_calls: Vapi sends each report once, so an ended call whose report we never took
is found by listing Vapi's calls, and billed exactly once, racing a late report or not."""

from __future__ import annotations

import threading

import pytest
from django.core.management import call_command
from django.db import connection

from billing.models import EntryType, LedgerEntry, WebhookEvent
from tests.voice.conftest import finished_call, make_clinic, post_message
from voice import vapi
from voice.models import Call
from voice.reconciliation import reconcile_calls

pytestmark = pytest.mark.django_db


def charges_by_call(org) -> dict[str, int]:
    entries = LedgerEntry.objects.filter(org=org, type=EntryType.CALL_CHARGE)
    keys = [e.idempotency_key for e in entries]
    assert len(keys) == len(set(keys))
    return {e.idempotency_key.removeprefix("call:"): e.amount_pence for e in entries}


def test_a_call_whose_report_never_came_is_billed_once_by_the_reconciler(api, vapi_double):
    clinic = make_clinic(vapi_double, balance_pence=2000)
    lost = finished_call(vapi_double, clinic, seconds=60)  # its report is never sent
    reported = finished_call(vapi_double, clinic, seconds=30)
    post_message(api, vapi_double.report(reported))

    first = reconcile_calls()
    assert first.calls_billed == [lost] and first.calls_already_billed == 1
    second = reconcile_calls()
    assert second.calls_billed == [] and second.calls_already_billed == 2

    assert charges_by_call(clinic.org) == {lost: -56, reported: -28}
    call = Call.objects.get(vapi_call_id=lost)
    assert call.duration_seconds == 60 and call.caller_number == "+447700900123"
    assert call.agent_id == clinic.agent.pk and call.summary

    late = post_message(api, vapi_double.report(lost))  # the report turns up after all
    assert late.json() == {"outcome": "duplicate"}
    assert charges_by_call(clinic.org) == {lost: -56, reported: -28}


def test_calls_still_in_progress_and_other_accounts_numbers_are_left_alone(vapi_double):
    clinic = make_clinic(vapi_double)
    vapi_double.start_call(clinic.phone_id, send=False)  # ringing, not ended
    stranger = vapi.import_twilio_number(
        phone_number="+15550999999", twilio_account_sid="AC1", twilio_auth_token="t", name="x"
    )
    other = vapi_double.start_call(stranger, send=False)
    vapi_double.end_call(other["id"], duration_seconds=60)
    assert reconcile_calls().calls_billed == []
    assert not Call.objects.exists()


def test_the_reconciler_reads_every_page_of_vapis_call_list(vapi_double):
    clinic = make_clinic(vapi_double, balance_pence=100_000)
    ids = [finished_call(vapi_double, clinic, seconds=1) for _ in range(vapi.PAGE_SIZE + 20)]
    assert sorted(reconcile_calls().calls_billed) == sorted(ids)
    assert vapi_double.calls["list_calls"] >= 2
    assert len(charges_by_call(clinic.org)) == len(ids)


def test_numbers_with_an_assistant_or_another_server_are_routed_back_to_our_webhook(
    vapi_double,
):
    clinic = make_clinic(vapi_double)
    with vapi_double.lock:
        row = vapi_double.imports[clinic.phone_id]
        row["assistantId"] = clinic.agent.vapi_assistant_id  # would skip assistant-request
        row["server"] = None
    assert reconcile_calls().numbers_rerouted == 1
    row = vapi_double.number_for(clinic.phone_id)
    assert row["assistantId"] is None and row["server"] == vapi.webhook_server()
    assert reconcile_calls().numbers_rerouted == 0  # nothing to change the second time


def test_the_command_prints_what_it_repaired(vapi_double, capsys):
    clinic = make_clinic(vapi_double)
    lost = finished_call(vapi_double, clinic, seconds=10)
    call_command("reconcile_calls")
    out, err = capsys.readouterr()
    assert f"REPAIRED: call {lost}" in err and "1 billed by the reconciler" in out


@pytest.mark.django_db(transaction=True)
def test_reconciler_racing_late_reports_bills_each_call_once(api, vapi_double):
    clinic = make_clinic(vapi_double, balance_pence=50_000)
    ids = [finished_call(vapi_double, clinic, seconds=30 + i) for i in range(12)]
    reports = [vapi_double.report(call_id) for call_id in ids]
    start = threading.Barrier(3)
    outcomes: list[str] = []
    errors: list[BaseException] = []

    def late_reports(order):
        from rest_framework.test import APIClient

        client = APIClient()
        try:
            start.wait()
            for report in order:
                outcomes.append(post_message(client, report).json()["outcome"])
        except BaseException as exc:  # surfaced below
            errors.append(exc)
        finally:
            connection.close()

    def reconciler():
        try:
            start.wait()
            outcomes.extend("processed" for _ in reconcile_calls().calls_billed)
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [
        threading.Thread(target=late_reports, args=(reports,)),
        threading.Thread(target=late_reports, args=(list(reversed(reports)),)),
        threading.Thread(target=reconciler),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert outcomes.count("processed") == len(ids)
    expected = {call_id: -(30 + i) * 56 // 60 for i, call_id in enumerate(ids)}  # -ceil
    assert charges_by_call(clinic.org) == expected
    assert Call.objects.filter(org=clinic.org).count() == len(ids)
    assert WebhookEvent.objects.filter(provider="vapi").count() == len(ids)
