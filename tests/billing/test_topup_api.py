"""POST /api/billing/wallet/topup, GET /api/billing/topups[/<id>], and the return page."""

from __future__ import annotations

import json

import pytest

from billing.models import TopUp
from sandbox.stripe import stripe_error
from tests.billing.conftest import balance, new_topup, start_topup, topup_credits
from tests.factories import auth_header, make_org

pytestmark = pytest.mark.django_db


def test_a_topup_opens_a_checkout_session_for_that_amount(api, stripe_double):
    org = make_org()
    response = start_topup(api, org, 2500)
    assert response.status_code == 201
    body = response.json()
    assert set(body) == {"topup_id", "url", "status", "amount_pence"}
    assert (body["status"], body["amount_pence"]) == ("pending", 2500)
    [session] = stripe_double.sessions.values()
    assert body["url"] == session["url"]
    assert session["mode"] == "payment" and session["currency"] == "gbp"
    assert session["amount_total"] == 2500
    assert session["client_reference_id"] == str(org.pk)
    assert session["metadata"]["topup_id"] == body["topup_id"]
    assert session["payment_intent_data"]["setup_future_usage"] == "off_session"
    assert session["success_url"] == f"http://127.0.0.1:8000/billing/topup/{body['topup_id']}"
    assert f"checkout:{body['topup_id']}" in stripe_double._idempotent
    assert TopUp.objects.get(pk=body["topup_id"]).stripe_session_id == session["id"]


@pytest.mark.parametrize(
    "body",
    [{"amount_pence": "2500"}, {"amount_pence": 2500.0}, {"amount_pence": True}, {}, [2500]],
)
def test_an_amount_that_is_not_a_whole_number_of_pence_is_400(api, stripe_double, body):
    org = make_org()
    response = api.generic(
        "POST",
        "/api/billing/wallet/topup",
        json.dumps(body),
        content_type="application/json",
        **auth_header(org),
    )
    assert response.status_code == 400
    assert "error" in response.json()
    assert not TopUp.objects.exists() and not stripe_double.sessions


@pytest.mark.parametrize("amount", [2499, 100001, 0, -2500])
def test_an_amount_outside_the_bounds_is_400(api, stripe_double, amount):
    response = start_topup(api, make_org(), amount)
    assert response.status_code == 400
    assert response.json()["error"] == "A top-up must be between £25.00 and £1,000.00."
    assert not TopUp.objects.exists()


def test_stripe_not_configured_is_500_with_nothing_written(api, settings):
    settings.STRIPE_SECRET_KEY = ""
    response = start_topup(api, make_org())
    assert response.status_code == 500
    assert response.json()["error"] == (
        "Top-ups are not available right now. Please contact support."
    )
    assert not TopUp.objects.exists()


def test_stripe_unreachable_is_503_and_the_same_key_later_gets_one_session(api, stripe_double):
    org = make_org()
    stripe_double.fail("create_session", stripe_error(500, "api_error", "down"), times=-1)
    first = start_topup(api, org, key="k-1")
    assert first.status_code == 503
    assert "payment provider" in first.json()["error"]
    stripe_double.heal()
    again = start_topup(api, org, key="k-1")
    assert again.status_code == 201
    assert TopUp.objects.for_org(org).count() == 1 and len(stripe_double.sessions) == 1


def test_an_idempotency_key_replays_its_topup_and_refuses_another_amount(api, stripe_double):
    org = make_org()
    first = start_topup(api, org, 2500, key="k-2").json()
    assert start_topup(api, org, 2500, key="k-2").json() == first
    reused = start_topup(api, org, 5000, key="k-2")
    assert reused.status_code == 422
    assert len(stripe_double.sessions) == 1
    assert start_topup(api, org, 2500).json()["topup_id"] != first["topup_id"]


def test_topups_are_listed_for_the_token_org_only(api, stripe_double):
    org, other = make_org("Mine"), make_org("Theirs")
    mine = new_topup(api, org)
    theirs = new_topup(api, other)
    body = api.get("/api/billing/topups", **auth_header(org)).json()
    assert [t["topup_id"] for t in body["topups"]] == [str(mine.pk)]
    assert body["pagination"]["total"] == 1
    detail = api.get(f"/api/billing/topups/{theirs.pk}", **auth_header(org))
    assert detail.status_code == 404 and detail.json()["error"] == "Not found"
    assert api.get("/api/billing/topups/not-a-uuid", **auth_header(org)).status_code == 404


def test_a_dropped_webhook_is_fulfilled_by_the_return_page_check(api, stripe_double):
    org = make_org()
    topup = new_topup(api, org)
    stripe_double.drop()
    stripe_double.pay(topup.stripe_session_id)
    url = f"/api/billing/topups/{topup.pk}"
    detail = api.get(url, **auth_header(org)).json()
    assert detail["status"] == "paid" and detail["receipt_url"] == ""
    assert api.get(url, **auth_header(org)).json()["status"] == "paid"
    assert topup_credits(org) == [2500] and balance(org) == 2500


def test_the_return_page_checks_the_topup_and_says_what_happened(api, client, stripe_double):
    org = make_org()
    topup = new_topup(api, org, 3000)
    page = client.get(f"/billing/topup/{topup.pk}?cancelled=1")
    assert page.status_code == 200
    assert "You cancelled the payment of £30.00" in page.content.decode()
    stripe_double.drop()
    stripe_double.pay(topup.stripe_session_id)
    page = client.get(f"/billing/topup/{topup.pk}")
    assert "£30.00 has been added to your wallet" in page.content.decode()
    assert balance(org) == 3000
    assert client.get("/billing/topup/6f1c7c57-0000-4000-8000-000000000000").status_code == 404


def test_a_pending_check_while_stripe_is_down_shows_pending(api, stripe_double):
    org = make_org()
    topup = new_topup(api, org)
    stripe_double.fail("retrieve_session", stripe_error(503, "api_error", "down"), times=-1)
    detail = api.get(f"/api/billing/topups/{topup.pk}", **auth_header(org))
    assert detail.status_code == 200 and detail.json()["status"] == "pending"
