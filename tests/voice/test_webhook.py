"""POST /api/voice/vapi/webhook: the secret, the gate at the start of a call, and one Call and
one charge per finished call however its report arrives."""

from __future__ import annotations

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from billing.models import EntryType, LedgerEntry, Wallet, WebhookEvent
from billing.services import freeze_wallet
from tests.voice.conftest import (
    SECRET,
    assistant_request,
    finished_call,
    make_clinic,
    post_message,
)
from voice import services
from voice.models import Call

pytestmark = pytest.mark.django_db


def balance(org) -> int:
    return Wallet.objects.get(org=org).balance_pence


def call_charges(org) -> list[LedgerEntry]:
    return list(LedgerEntry.objects.filter(org=org, type=EntryType.CALL_CHARGE))


# --- The secret ----------------------------------------------------------------------------


@pytest.mark.parametrize("secret", [None, "", "wrong-secret", SECRET + "x"])
def test_a_missing_or_wrong_secret_is_401_and_nothing_is_recorded(api, vapi_double, secret):
    clinic = make_clinic(vapi_double)
    call_id = finished_call(vapi_double, clinic, seconds=60)
    response = post_message(api, vapi_double.report(call_id), secret=secret)
    assert response.status_code == 401
    assert set(response.json()) <= {"error", "code"}
    assert not Call.objects.exists() and call_charges(clinic.org) == []


def test_no_secret_configured_refuses_every_webhook(api, vapi_double, settings):
    clinic = make_clinic(vapi_double)
    settings.VAPI_WEBHOOK_SECRET = ""
    response = post_message(api, assistant_request(vapi_double, clinic), secret="")
    assert response.status_code == 401


def test_a_body_that_is_not_a_server_message_is_400(api, vapi_double):
    response = api.post(
        "/api/voice/vapi/webhook",
        b"not json",
        content_type="application/json",
        HTTP_X_VAPI_SECRET=SECRET,
    )
    assert response.status_code == 400 and "error" in response.json()


# --- The gate: assistant-request -----------------------------------------------------------


def test_a_funded_clinic_gets_its_assistant_for_as_long_as_its_money_lasts(api, vapi_double):
    clinic = make_clinic(vapi_double, balance_pence=2000)
    response = post_message(api, assistant_request(vapi_double, clinic))
    assert response.status_code == 200
    body = response.json()
    assert body["assistantId"] == clinic.agent.vapi_assistant_id
    assert body["assistantOverrides"]["maxDurationSeconds"] == 600  # capped at MAX_CALL_SECONDS


@pytest.mark.parametrize(
    ("balance_pence", "debt_limit", "expected"),
    [
        (56, 0, 60),  # exactly a minute of money
        (112, 0, 120),
        (100, 0, 107),  # whole seconds only: 100 pence buy 107.1 s
        (1, 500, 536),  # 501 pence of funds buy 536.8 s
        (5000, 500, 600),  # capped
    ],
)
def test_max_duration_is_what_balance_plus_debt_limit_pays_for(
    api, vapi_double, settings, balance_pence, debt_limit, expected
):
    settings.DEBT_LIMIT_PENCE = debt_limit
    clinic = make_clinic(vapi_double, balance_pence=balance_pence)
    body = post_message(api, assistant_request(vapi_double, clinic)).json()
    assert body["assistantOverrides"]["maxDurationSeconds"] == expected


def test_under_a_minute_of_funds_is_refused_with_a_sentence_for_the_caller(
    api, vapi_double, settings
):
    settings.DEBT_LIMIT_PENCE = 0
    clinic = make_clinic(vapi_double, balance_pence=55)  # 58 seconds
    response = post_message(api, assistant_request(vapi_double, clinic))
    assert response.status_code == 200
    assert set(response.json()) == {"error"} and response.json()["error"].endswith("Goodbye.")


def test_an_unfunded_clinic_is_refused(api, vapi_double):
    clinic = make_clinic(vapi_double, balance_pence=0)
    assert set(post_message(api, assistant_request(vapi_double, clinic)).json()) == {"error"}


def test_a_frozen_wallet_is_refused_whatever_its_balance(api, vapi_double):
    clinic = make_clinic(vapi_double, balance_pence=5000)
    with transaction.atomic():
        freeze_wallet(org=clinic.org, reason="dispute opened")
    body = post_message(api, assistant_request(vapi_double, clinic)).json()
    assert body == {"error": services.SAY_ON_HOLD}


def test_a_clinic_without_an_agent_is_refused(api, vapi_double):
    clinic = make_clinic(vapi_double, agent=False)
    body = post_message(api, assistant_request(vapi_double, clinic)).json()
    assert body == {"error": services.SAY_NO_AGENT}


def test_an_unknown_number_is_refused(api, vapi_double):
    message = {
        "type": "assistant-request",
        "call": {"id": "c1", "phoneNumberId": "not-ours"},
        "phoneNumber": {"id": "not-ours", "number": "+15559990000"},
    }
    assert post_message(api, message).json() == {"error": services.SAY_UNKNOWN_NUMBER}


def test_the_number_alone_finds_the_clinic(api, vapi_double):
    clinic = make_clinic(vapi_double)
    message = {"type": "assistant-request", "phoneNumber": {"number": clinic.number}}
    assert post_message(api, message).json()["assistantId"] == clinic.agent.vapi_assistant_id


def test_the_gate_is_a_few_queries_and_no_provider_call(
    api, vapi_double, django_assert_max_num_queries
):
    clinic = make_clinic(vapi_double)
    message = assistant_request(vapi_double, clinic)
    before = sum(vapi_double.calls.values())
    # The system scope, set once by TenantMiddleware, and the lookup; in a test, also the
    # test's own scope put back (5 while the view opened a scope of its own)
    with django_assert_max_num_queries(3):
        assert "assistantId" in post_message(api, message).json()
    assert sum(vapi_double.calls.values()) == before


# --- end-of-call-report --------------------------------------------------------------------


def test_a_report_is_one_call_and_one_charge_of_ceil_seconds_times_rate(api, vapi_double):
    clinic = make_clinic(vapi_double, balance_pence=2000)
    call_id = finished_call(vapi_double, clinic, seconds=61)  # 61 x 56 / 60 = 56.9 -> 57
    before = balance(clinic.org)
    response = post_message(api, vapi_double.report(call_id))
    assert response.status_code == 200 and response.json() == {"outcome": "processed"}

    call = Call.objects.get(vapi_call_id=call_id)
    assert call.org_id == clinic.org.pk and call.agent_id == clinic.agent.pk
    assert (call.duration_seconds, call.cost_pence) == (61, 57)
    assert call.caller_number == "+447700900123"
    assert call.ended_reason == "customer-ended-call"
    assert call.summary and call.recording_url.endswith(f"{call_id}-mono.wav")
    [charge] = call_charges(clinic.org)
    assert charge.amount_pence == -57 and charge.idempotency_key == f"call:{call_id}"
    assert call.charge_id == charge.pk
    assert balance(clinic.org) == before - 57


def test_a_report_is_a_few_queries(api, vapi_double, django_assert_max_num_queries):
    clinic = make_clinic(vapi_double, balance_pence=2000)
    call_id = finished_call(vapi_double, clinic, seconds=30)
    message = vapi_double.report(call_id)
    # 6 as the service runs: the system scope (once, TenantMiddleware), the inbox row, who
    # owns the call (clinic, agent, already recorded), the wallet's lock and posting, the Call
    # row; in a test, also a savepoint, its release and the test's own scope put back (11
    # while the view opened a scope of its own and the owner took three queries)
    with django_assert_max_num_queries(9):
        assert post_message(api, message).json() == {"outcome": "processed"}
    assert Call.objects.get(vapi_call_id=call_id).agent_id == clinic.agent.pk


def test_a_report_delivered_three_times_is_one_call_and_one_charge(api, vapi_double):
    clinic = make_clinic(vapi_double, balance_pence=2000)
    call_id = finished_call(vapi_double, clinic, seconds=120)
    report = vapi_double.report(call_id)
    outcomes = [post_message(api, report).json()["outcome"] for _ in range(3)]
    assert outcomes == ["processed", "duplicate", "duplicate"]
    assert Call.objects.filter(vapi_call_id=call_id).count() == 1
    assert [c.amount_pence for c in call_charges(clinic.org)] == [-112]
    assert balance(clinic.org) == 2000 - 112


def test_a_second_delivery_is_answered_without_rolling_anything_back(api, vapi_double):
    """The inbox finds a stored event with ON CONFLICT DO NOTHING, not a unique violation: a
    rollback would also make psycopg drop every prepared statement of the connection."""
    clinic = make_clinic(vapi_double, balance_pence=2000)
    report = vapi_double.report(finished_call(vapi_double, clinic, seconds=30))
    post_message(api, report)
    with CaptureQueriesContext(connection) as captured:
        assert post_message(api, report).json() == {"outcome": "duplicate"}
    assert [q["sql"] for q in captured if q["sql"].upper().startswith("ROLLBACK")] == []


def test_status_messages_before_the_report_do_not_hide_it(api, vapi_double):
    clinic = make_clinic(vapi_double, balance_pence=2000)
    call_id = finished_call(vapi_double, clinic, seconds=30)
    for status in ("ringing", "in-progress", "ended"):
        response = post_message(api, vapi_double.status_update(call_id, status))
        assert response.status_code == 200 and response.json() == {"outcome": "ignored"}
    for other in ("transcript", "speech-update", "hang"):
        assert post_message(api, {"type": other, "call": {"id": call_id}}).status_code == 200
    assert not Call.objects.exists()
    assert post_message(api, vapi_double.report(call_id)).json() == {"outcome": "processed"}
    assert Call.objects.get(vapi_call_id=call_id).cost_pence == 28


def test_a_long_call_takes_the_balance_below_zero_and_the_next_call_is_refused(api, vapi_double):
    clinic = make_clinic(vapi_double, balance_pence=100)
    gate = post_message(api, assistant_request(vapi_double, clinic)).json()
    allowed = gate["assistantOverrides"]["maxDurationSeconds"]
    assert allowed == 600  # 600 pence of funds pay 642 s; capped

    call_id = finished_call(vapi_double, clinic, seconds=allowed)
    assert post_message(api, vapi_double.report(call_id)).json() == {"outcome": "processed"}
    assert balance(clinic.org) == 100 - 560  # money already gone is always recorded

    refused = post_message(api, assistant_request(vapi_double, clinic)).json()
    assert refused == {"error": services.SAY_NO_FUNDS}


def test_a_report_for_a_number_nobody_owns_is_kept_for_support_and_bills_nobody(api, vapi_double):
    clinic = make_clinic(vapi_double)
    call_id = finished_call(vapi_double, clinic, seconds=30)
    report = vapi_double.report(call_id)
    report["call"] = {**report["call"], "phoneNumberId": "gone", "assistantId": "gone"}
    assert post_message(api, report).json() == {"outcome": "ignored"}
    event = WebhookEvent.objects.get(provider="vapi")
    assert "no clinic" in event.error
    assert not Call.objects.exists()


def test_a_report_without_a_number_we_know_is_billed_to_the_clinic_whose_assistant_answered(
    api, vapi_double
):
    clinic = make_clinic(vapi_double, balance_pence=2000)
    other = make_clinic(vapi_double, balance_pence=2000)
    call_id = finished_call(vapi_double, clinic, seconds=60)
    report = vapi_double.report(call_id)
    report["call"] = {**report["call"], "phoneNumberId": ""}
    assert post_message(api, report).json() == {"outcome": "processed"}
    call = Call.objects.get(vapi_call_id=call_id)
    assert (call.org_id, call.agent_id, call.cost_pence) == (clinic.org.pk, clinic.agent.pk, 56)
    assert balance(clinic.org) == 2000 - 56 and balance(other.org) == 2000


def test_the_double_sends_the_report_only_when_the_assistant_asks_for_it(vapi_double):
    clinic = make_clinic(vapi_double)
    assistant = vapi_double.assistants[clinic.agent.vapi_assistant_id]
    assert "end-of-call-report" in assistant["serverMessages"]
    assert assistant["server"]["headers"] == {"X-Vapi-Secret": SECRET}
    assert len(assistant["name"]) <= 40
