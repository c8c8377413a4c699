"""Support sees a clinic's agent (its Vapi ids), calls and charges, refunds a call through the
refund screen; a newcomer places a sandbox call and sees it billed."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from django.test import Client

from billing.models import LedgerEntry, Wallet
from tests.billing.test_admin_money import REFUNDER, refund_form, refund_page
from tests.factories import make_support_user
from tests.voice.conftest import finished_call, make_clinic, post_message
from voice.models import Call


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


VIEWER = (*REFUNDER, "voice.view_agent", "voice.view_call")


@pytest.mark.django_db
def test_the_clinic_page_shows_its_agents_vapi_ids_and_its_calls_with_a_refund_link(
    api, vapi_double
):
    clinic = make_clinic(vapi_double)
    call_id = finished_call(vapi_double, clinic, seconds=90)
    post_message(api, vapi_double.report(call_id))
    call = Call.objects.get(vapi_call_id=call_id)
    client = client_for(make_support_user(permissions=VIEWER))

    page = client.get(f"/admin/voxanne/organization/{clinic.org.pk}/change/").content.decode()
    assert clinic.agent.vapi_assistant_id in page and clinic.agent.vapi_name in page
    assert call_id in page and "£0.84" in page
    assert f"/admin/billing/ledgerentry/{call.charge_id}/refund/" in page
    calls = client.get("/admin/voice/call/", {"q": str(clinic.org.pk)}).content.decode()
    assert call_id in calls


@pytest.mark.django_db
def test_a_call_charge_is_refunded_through_the_existing_refund_screen(api, vapi_double):
    clinic = make_clinic(vapi_double, balance_pence=1000)
    call_id = finished_call(vapi_double, clinic, seconds=600)
    post_message(api, vapi_double.report(call_id))
    charge = Call.objects.get(vapi_call_id=call_id).charge
    assert charge.amount_pence == -560
    client = client_for(make_support_user(permissions=VIEWER))

    client.post(refund_page(charge), refund_form(client, charge, reason="Caller was cut off"))
    [refund] = LedgerEntry.objects.filter(reverses=charge)
    assert refund.amount_pence == 560 and refund.internal_note == "Caller was cut off"
    assert refund.description == "Refund from Voxanne support"  # support's words stay inside
    assert Wallet.objects.get(org=clinic.org).balance_pence == 1000


@pytest.mark.django_db(transaction=True)
def test_a_sandbox_call_from_the_command_is_answered_and_billed(
    vapi_double, live_server, settings, capsys
):
    settings.APP_BASE_URL = live_server.url
    settings.TELEPHONY_SANDBOX = True
    clinic = make_clinic(vapi_double, balance_pence=1000, name="Sandbox")
    call_command("sandbox_call", "Sandbox Dental", "--seconds", "60")
    out = capsys.readouterr().out
    assert "billed £0.56" in out and "now has £9.44" in out
    assert Call.objects.get(org=clinic.org).duration_seconds == 60


@pytest.mark.django_db(transaction=True)
def test_a_sandbox_call_from_admin_is_billed(vapi_double, live_server, settings):
    settings.APP_BASE_URL = live_server.url
    settings.TELEPHONY_SANDBOX = True
    clinic = make_clinic(vapi_double, balance_pence=1000, name="Admin")
    client = client_for(make_support_user(permissions=VIEWER))
    response = client.post(
        "/admin/voice/agent/",
        {"action": "place_sandbox_call", "_selected_action": [str(clinic.agent.pk)]},
        follow=True,
    )
    assert "call was billed £0.84" in response.content.decode()
    assert Wallet.objects.get(org=clinic.org).balance_pence == 1000 - 84


@pytest.mark.django_db
def test_sandbox_calls_are_refused_outside_the_sandbox(vapi_double, settings):
    settings.TELEPHONY_SANDBOX = False
    make_clinic(vapi_double, name="Real")
    with pytest.raises(Exception, match="TELEPHONY_SANDBOX"):
        call_command("sandbox_call", "Real Dental")
