"""voice/vapi.py against the wire-level Vapi double: what each failure means to a caller, and
look-ups that read every page."""

from __future__ import annotations

import pytest

from sandbox.server import Reply
from tests.doubles import fixtures
from voice import vapi

providers = fixtures.providers


def import_number(number: str = "+15550100001") -> str:
    return vapi.import_twilio_number(
        phone_number=number, twilio_account_sid="AC1", twilio_auth_token="t", name="n"
    )


@pytest.fixture
def vapi_only(providers):
    """The Vapi double without the Twilio ownership check, so numbers can be imported freely."""
    providers.vapi.twilio = None
    return providers.vapi


@pytest.mark.parametrize("status", [400, 422])
def test_a_request_vapi_refuses_is_permanent_not_unavailable(vapi_only, status):
    vapi_only.fail("import", Reply(status, {"message": "bad request", "statusCode": status}))
    with pytest.raises(vapi.VapiRejected) as caught:
        import_number()
    assert not caught.value.transient
    assert not isinstance(caught.value, vapi.VapiUnavailable)
    assert caught.value.status == status


@pytest.mark.parametrize("status", [429, 500, 502, 503])
def test_rate_limits_and_server_errors_are_transient(vapi_only, status):
    vapi_only.fail("import", Reply(status, {"message": "try later", "statusCode": status}))
    with pytest.raises(vapi.VapiUnavailable) as caught:
        import_number()
    assert caught.value.transient and caught.value.status == status


def test_no_answer_in_time_is_an_unknown_outcome(vapi_only, settings):
    settings.PROVIDER_TIMEOUT_SECONDS = 0.2
    vapi_only.delay("import", 1)
    with pytest.raises(vapi.VapiOutcomeUnknown) as caught:
        import_number()
    assert caught.value.transient


def test_a_refused_key_is_not_configured(vapi_only, settings):
    settings.VAPI_PRIVATE_KEY = "not-the-key"
    with pytest.raises(vapi.VapiNotConfigured) as caught:
        import_number()
    assert not caught.value.transient and caught.value.status == 401


def test_deleting_an_import_that_is_already_gone_counts_as_done(vapi_only):
    phone_id = import_number()
    vapi.delete_import(phone_id=phone_id)
    vapi.delete_import(phone_id=phone_id)
    assert vapi_only.imported_numbers() == []


def test_find_import_reads_past_the_first_page(vapi_only):
    numbers = [f"+1555010{i:04d}" for i in range(vapi.PAGE_SIZE * 2 + 5)]
    ids = {number: import_number(number) for number in numbers}

    oldest = numbers[0]  # Vapi lists newest first: the oldest is on the last page
    assert vapi.find_import(phone_number=oldest) == ids[oldest]
    assert vapi_only.calls["list"] == 3
    assert vapi.find_import(phone_number="+15559999999") is None


def test_find_import_does_not_skip_rows_created_in_the_same_instant_as_a_page_edge(vapi_only):
    numbers = [f"+1555020{i:04d}" for i in range(vapi.PAGE_SIZE + 10)]  # oldest first
    ids = {number: import_number(number) for number in numbers}
    # The 15 oldest share one instant, so the first page ends in the middle of them.
    instant = vapi_only.imports[ids[numbers[0]]]["createdAt"]
    for number in numbers[:15]:
        vapi_only.imports[ids[number]]["createdAt"] = instant

    assert {n: vapi.find_import(phone_number=n) for n in numbers[:15]} == {
        n: ids[n] for n in numbers[:15]
    }
