"""POST /api/onboarding/provision-number through the full stack, against wire-level doubles."""

from __future__ import annotations

import json
import logging
import time

import pytest
from django.db.models import Sum

from billing.models import EntryType, LedgerEntry, Wallet
from billing.services import credit
from onboarding import telephony
from onboarding.models import (
    AttemptState,
    ManagedPhoneNumber,
    ProvisioningAttempt,
    TwilioSubaccount,
)
from onboarding.provisioning import subaccount_name
from onboarding.reconciler import reconcile_stuck_attempts
from sandbox.server import Reply
from sandbox.twilio import (
    ADDRESS_REQUIRED,
    AUTH_FAILED,
    BUNDLE_REQUIRED,
    NUMBER_TAKEN,
    SERVER_ERROR,
)
from tests.doubles import fixtures
from tests.doubles.fixtures import lapse_leases
from tests.factories import auth_header, make_org

pytestmark = pytest.mark.django_db
providers = fixtures.providers

URL = "/api/onboarding/provision-number"
E164 = r"^\+1\d{10}$"
INSUFFICIENT = "Insufficient balance for phone number. Please top up your wallet."
UNAVAILABLE = "Phone provisioning not available. Please contact support."


def funded_org(pence: int = 5000, name: str = "Smile Dental"):
    org = make_org(name)
    if pence:
        credit(org=org, amount_pence=pence, type=EntryType.TOPUP, idempotency_key=f"topup-{org.pk}")
    return org


def provision(api, org, body=None, key: str | None = None):
    headers = auth_header(org)
    if key is not None:
        headers["HTTP_IDEMPOTENCY_KEY"] = key
    return api.generic(
        "POST", URL, json.dumps(body or {}), content_type="application/json", **headers
    )


def balance(org) -> int:
    return Wallet.objects.get(org=org).balance_pence


def assert_ledger_adds_up(org) -> None:
    total = LedgerEntry.objects.filter(org=org).aggregate(s=Sum("amount_pence"))["s"] or 0
    assert total == balance(org)


def test_provisioning_requires_a_token(api, providers):
    response = api.post(URL, {}, format="json")
    assert response.status_code == 401
    assert providers.calls() == 0


def test_balance_below_the_price_is_402_before_any_provider_call(api, providers):
    org = funded_org(999)
    response = provision(api, org)
    assert response.status_code == 402
    assert response.json()["error"] == INSUFFICIENT
    assert providers.calls() == 0
    assert balance(org) == 999
    assert not ProvisioningAttempt.objects.filter(org=org).exists()


def test_new_number_is_200_in_e164_stored_with_its_credentials_for_exactly_1000(api, providers):
    org = funded_org(5000)
    response = provision(api, org, {"area_code": "415"})

    assert response.status_code == 200, response.content
    body = response.json()
    assert set(body) == {"success", "phoneNumber"} and body["success"] is True
    assert body["phoneNumber"].startswith("+1415")
    assert len(body["phoneNumber"]) == 12
    number = ManagedPhoneNumber.objects.get(org=org)
    assert number.phone_number == body["phoneNumber"]
    assert number.status == ManagedPhoneNumber.Status.ACTIVE
    subaccount = TwilioSubaccount.objects.get(org=org)
    assert subaccount.friendly_name == f"voxanne-org-{org.pk.hex}"
    twilio_side = {a["sid"]: a for a in providers.twilio.subaccounts()}[subaccount.account_sid]
    assert twilio_side["friendly_name"] == subaccount.friendly_name
    assert twilio_side["auth_token"] not in subaccount.auth_token_encrypted
    assert subaccount.auth_token == twilio_side["auth_token"]
    owned = providers.twilio.owned_numbers(subaccount.account_sid)
    assert [n["phone_number"] for n in owned] == [number.phone_number]
    assert owned[0]["sid"] == number.twilio_number_sid
    assert providers.vapi.imported_numbers() == [number.phone_number]
    assert number.vapi_phone_id in providers.vapi.imports
    assert balance(org) == 4000
    charges = LedgerEntry.objects.filter(org=org, type=EntryType.PHONE_PROVISIONING)
    assert [c.amount_pence for c in charges] == [-1000]
    assert_ledger_adds_up(org)


def test_a_second_call_returns_the_existing_number_without_charge_or_provider_call(api, providers):
    org = funded_org(5000)
    first = provision(api, org).json()["phoneNumber"]
    calls = providers.calls()

    again = provision(api, org)

    assert again.status_code == 200
    assert again.json() == {"success": True, "phoneNumber": first, "alreadyProvisioned": True}
    assert providers.calls() == calls
    assert balance(org) == 4000


def test_missing_master_credentials_is_500_without_touching_the_wallet(api, providers, settings):
    settings.TWILIO_MASTER_AUTH_TOKEN = ""
    org = funded_org(5000)
    response = provision(api, org)
    assert response.status_code == 500
    assert response.json()["error"] == UNAVAILABLE
    assert providers.calls() == 0
    assert LedgerEntry.objects.filter(org=org).count() == 1  # the top-up only


def test_balance_is_not_checked_before_configuration(api, providers, settings):
    settings.TWILIO_MASTER_ACCOUNT_SID = ""
    response = provision(api, funded_org(0))
    assert response.status_code == 500


def assert_refunded_in_full(api, org, start: int = 5000) -> None:
    assert balance(org) == start
    assert_ledger_adds_up(org)
    hold = LedgerEntry.objects.get(org=org, type=EntryType.PHONE_PROVISIONING)
    refund = LedgerEntry.objects.get(org=org, type=EntryType.REFUND)
    assert refund.reverses_id == hold.pk and refund.amount_pence == 1000
    listed = api.get("/api/billing/wallet/transactions", **auth_header(org)).json()
    rows = next(v for v in listed.values() if isinstance(v, list))
    assert [r["type"] for r in rows if r["type"] == "refund"] == ["refund"]
    attempt = ProvisioningAttempt.objects.get(org=org)
    assert attempt.state == AttemptState.FAILED and attempt.refunded_at is not None


@pytest.mark.parametrize(
    "provider,step",
    [
        ("twilio", "create_account"),
        ("twilio", "search"),
        ("twilio", "buy"),
        ("vapi", "import"),
    ],
)
def test_a_provider_failure_refunds_before_answering_with_a_sanitized_5xx(
    api, providers, provider, step
):
    org = funded_org(5000)
    double = getattr(providers, provider)
    double.fail(step, SERVER_ERROR if provider == "twilio" else Reply(500, {"message": "boom"}))

    response = provision(api, org)

    assert response.status_code == 503
    body = response.json()
    assert set(body) <= {"error", "code"}
    assert "refunded" in body["error"]
    assert not any(w in response.content.decode().lower() for w in ("twilio", "vapi", "20500"))
    assert_refunded_in_full(api, org)
    assert providers.twilio.owned_numbers() == []
    assert providers.vapi.imported_numbers() == []
    assert not ManagedPhoneNumber.objects.filter(org=org).exists()
    attempt = ProvisioningAttempt.objects.get(org=org)
    assert attempt.error_detail  # the provider's text is kept for support


def test_a_vapi_failure_releases_the_number_that_was_bought(api, providers):
    org = funded_org(5000)
    providers.vapi.fail("import", Reply(502, {"message": "bad gateway"}))
    provision(api, org)
    assert [n["friendly_name"] for n in providers.twilio.released] == [
        ProvisioningAttempt.objects.get(org=org).number_friendly_name
    ]
    assert providers.twilio.owned_numbers() == []


def test_no_numbers_in_the_area_code_is_a_clear_4xx_and_a_refund(api, providers):
    org = funded_org(5000)
    providers.twilio.areas_without_numbers.add("212")
    response = provision(api, org, {"area_code": "212"})
    assert response.status_code == 422
    assert "area code" in response.json()["error"]
    assert_refunded_in_full(api, org)
    assert providers.twilio.calls["buy"] == 0


def test_a_number_taken_between_search_and_purchase_is_searched_again_once(api, providers):
    org = funded_org(5000)
    providers.twilio.fail("buy", NUMBER_TAKEN)
    response = provision(api, org)
    assert response.status_code == 200
    assert providers.twilio.calls["search"] == 2 and providers.twilio.calls["buy"] == 2
    assert balance(org) == 4000


def test_a_number_taken_twice_gives_up_and_refunds(api, providers):
    org = funded_org(5000)
    providers.twilio.fail("buy", NUMBER_TAKEN, times=2)
    response = provision(api, org)
    assert response.status_code == 503
    assert providers.twilio.calls["buy"] == 2
    assert_refunded_in_full(api, org)


@pytest.mark.parametrize("error", [ADDRESS_REQUIRED, BUNDLE_REQUIRED])
def test_address_or_bundle_requirement_is_a_clear_4xx_and_a_refund(api, providers, error):
    org = funded_org(5000)
    providers.twilio.fail("buy", error)
    response = provision(api, org)
    assert response.status_code == 422
    assert "regulatory bundle" in response.json()["error"]
    assert_refunded_in_full(api, org)


def test_refused_master_credentials_count_as_not_configured_and_alert(api, providers, caplog):
    org = funded_org(5000)
    providers.twilio.fail("create_account", AUTH_FAILED)
    with caplog.at_level(logging.CRITICAL, logger="onboarding.provisioning"):
        response = provision(api, org)
    assert response.status_code == 500
    assert response.json()["error"] == UNAVAILABLE
    assert any("ALERT" in r.getMessage() for r in caplog.records)
    assert_refunded_in_full(api, org)


def test_an_org_id_in_the_body_is_ignored(api, providers):
    mine, theirs = funded_org(5000, "Mine"), funded_org(5000, "Theirs")
    response = provision(api, mine, {"org_id": str(theirs.pk)})
    assert response.status_code == 200
    assert ManagedPhoneNumber.objects.get().org_id == mine.pk
    assert (balance(mine), balance(theirs)) == (4000, 5000)
    assert not TwilioSubaccount.objects.filter(org=theirs).exists()


@pytest.mark.parametrize("area_code", ["41", "4155", "abc", "４１５", 415, ["415"]])
def test_area_code_must_be_three_digits(api, providers, area_code):
    org = funded_org(5000)
    response = provision(api, org, {"area_code": area_code})
    assert response.status_code == 400
    assert response.json()["error"].startswith("area_code:")
    assert providers.calls() == 0 and balance(org) == 5000


def test_the_same_key_and_body_replays_the_first_response_without_a_second_charge(api, providers):
    org = funded_org(5000)
    first = provision(api, org, {"area_code": "415"}, key="click-1")
    calls = providers.calls()
    again = provision(api, org, {"area_code": "415"}, key="click-1")
    assert again.status_code == 200 and again.json() == first.json()
    assert providers.calls() == calls and balance(org) == 4000


def test_the_same_key_with_another_body_is_422(api, providers):
    org = funded_org(5000)
    provision(api, org, {"area_code": "415"}, key="click-1")
    response = provision(api, org, {"area_code": "212"}, key="click-1")
    assert response.status_code == 422
    assert "Idempotency-Key" in response.json()["error"]
    assert balance(org) == 4000


def test_a_stored_failure_is_replayed_for_its_key_and_a_new_key_may_try_again(api, providers):
    org = funded_org(5000)
    providers.twilio.fail("search", SERVER_ERROR)
    failed = provision(api, org, key="k1")
    providers.twilio.heal()
    replay = provision(api, org, key="k1")
    assert (
        (replay.status_code, replay.json())
        == (failed.status_code, failed.json())
        == (
            503,
            failed.json(),
        )
    )
    fresh = provision(api, org, key="k2")
    assert fresh.status_code == 200
    assert balance(org) == 4000
    assert_ledger_adds_up(org)


def test_without_a_key_a_retry_after_a_failure_may_try_again(api, providers):
    org = funded_org(5000)
    providers.twilio.fail("search", SERVER_ERROR)
    assert provision(api, org).status_code == 503
    assert provision(api, org).status_code == 200
    assert balance(org) == 4000
    keys = sorted(
        ProvisioningAttempt.objects.filter(org=org).values_list("idempotency_key", flat=True)
    )
    assert keys == ["auto-1", "auto-2"]


@pytest.mark.parametrize("key", ["", "   ", "k" * 256])
def test_a_blank_or_overlong_idempotency_key_is_400(api, providers, key):
    org = funded_org(5000)
    response = provision(api, org, key=key)
    assert response.status_code == 400
    assert providers.calls() == 0


@pytest.mark.parametrize("provider,step", [("twilio", "buy"), ("vapi", "import")])
def test_a_step_that_times_out_is_refunded_now_and_undone_when_it_completes_late(
    api, providers, settings, provider, step
):
    settings.PROVIDER_TIMEOUT_SECONDS = 0.3
    org = funded_org(5000)
    double = getattr(providers, provider)
    double.delay(step, 0.6)  # the provider does the step, after we stopped waiting
    providers.twilio.delay("release", 0.5)  # (so a late import still finds its number owned)

    response = provision(api, org)

    assert response.status_code == 503
    assert balance(org) == 5000  # money back before the answer
    landed = providers.twilio.numbers if provider == "twilio" else providers.vapi.imports
    deadline = time.monotonic() + 3
    while not landed and time.monotonic() < deadline:
        time.sleep(0.05)
    assert landed, "the late step never landed: the scenario did not happen"
    providers.twilio.heal()
    providers.vapi.heal()
    lapse_leases()
    [result] = reconcile_stuck_attempts()
    assert result.outcome == "refunded"
    assert providers.twilio.owned_numbers() == [] and providers.vapi.imported_numbers() == []
    assert_refunded_in_full(api, org)


def test_a_subaccount_twilio_creates_after_we_stopped_waiting_is_used_not_duplicated(
    api, providers, settings
):
    """Twilio creates the org's subaccount after our call timed out, and after the reconciler
    looked for it: the clinic's next attempt finds it by name instead of creating a second."""
    settings.PROVIDER_TIMEOUT_SECONDS = 0.3
    org = funded_org(5000)
    providers.twilio.delay("create_account", 1.0)

    assert provision(api, org).status_code == 503
    lapse_leases()
    reconcile_stuck_attempts()  # too early: Twilio has not created it yet
    deadline = time.monotonic() + 3
    while not providers.twilio.subaccounts() and time.monotonic() < deadline:
        time.sleep(0.05)
    [late] = providers.twilio.subaccounts()
    assert late["friendly_name"] == subaccount_name(org.pk)
    assert not TwilioSubaccount.objects.filter(org=org).exists()
    assert balance(org) == 5000
    providers.twilio.heal()
    telephony.create_subaccount(friendly_name=subaccount_name(make_org("Other").pk))

    response = provision(api, org)

    assert response.status_code == 200, response.content
    subaccount = TwilioSubaccount.objects.get(org=org)
    assert (subaccount.account_sid, subaccount.auth_token) == (late["sid"], late["auth_token"])
    assert len(providers.twilio.subaccounts()) == 2  # the late one and the other org's: no third
    [number] = providers.twilio.owned_numbers()
    assert number["account_sid"] == late["sid"]
    assert balance(org) == 4000
