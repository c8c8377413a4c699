"""GET /api/billing/wallet and /api/billing/wallet/transactions: the token's org only."""

from __future__ import annotations

import pytest

from billing import services
from billing.models import EntryType
from tests.factories import auth_header, charge, fund, make_org, make_support_user

pytestmark = pytest.mark.django_db


def test_wallet_shows_the_balance_in_pence_and_pounds(api):
    org = make_org()
    fund(org, 1234)
    response = api.get("/api/billing/wallet", **auth_header(org))
    assert response.status_code == 200
    body = response.json()
    assert body["balance_pence"] == 1234
    assert body["balance_formatted"] == "£12.34"
    assert body["currency"] == "GBP"


def test_wallet_and_transactions_need_a_token(api):
    for url in ("/api/billing/wallet", "/api/billing/wallet/transactions"):
        response = api.get(url)
        assert response.status_code == 401
        assert response.json() == {"error": "Unauthorized"}


def test_transactions_are_newest_first_with_the_documented_fields(api):
    org = make_org()
    fund(org, 2500)
    debit = charge(org, 1000)
    services.refund(entry=debit, amount_pence=400, reason="goodwill", idempotency_key="r1")
    body = api.get("/api/billing/wallet/transactions", **auth_header(org)).json()
    rows = body["transactions"]
    assert [(r["type"], r["amount_pence"], r["balance_after_pence"]) for r in rows] == [
        ("refund", 400, 1900),
        ("phone_provisioning", -1000, 1500),
        ("topup", 2500, 2500),
    ]
    assert set(rows[0]) == {
        "id",
        "type",
        "amount_pence",
        "balance_after_pence",
        "description",
        "created_at",
    }
    assert rows[0]["description"] == "goodwill"
    assert body["pagination"] == {"page": 1, "limit": 50, "total": 3, "total_pages": 1}


def test_transactions_page_and_filter_by_type(api):
    org = make_org()
    for _ in range(5):
        fund(org, 100)
    charge(org, 100)
    page = api.get("/api/billing/wallet/transactions?page=2&limit=2", **auth_header(org)).json()
    assert page["pagination"] == {"page": 2, "limit": 2, "total": 6, "total_pages": 3}
    assert [r["balance_after_pence"] for r in page["transactions"]] == [400, 300]
    topups = api.get("/api/billing/wallet/transactions?type=topup", **auth_header(org)).json()
    assert {r["type"] for r in topups["transactions"]} == {"topup"}
    assert topups["pagination"]["total"] == 5


def test_another_orgs_ledger_is_never_listed(api):
    mine, theirs = make_org("Mine"), make_org("Theirs")
    fund(mine, 100)
    fund(theirs, 9999)
    charge(theirs, 1000)
    body = api.get(
        f"/api/billing/wallet/transactions?org_id={theirs.id}", **auth_header(mine)
    ).json()
    assert [r["amount_pence"] for r in body["transactions"]] == [100]
    wallet = api.get("/api/billing/wallet", **auth_header(mine)).json()
    assert wallet["balance_pence"] == 100


@pytest.mark.parametrize(
    "query", ["page=0", "page=-1", "page=x", "limit=0", "limit=101", "limit=abc", "type=gift"]
)
def test_bad_paging_or_unknown_type_is_a_400_with_an_error(api, query):
    org = make_org()
    response = api.get(f"/api/billing/wallet/transactions?{query}", **auth_header(org))
    assert response.status_code == 400
    assert isinstance(response.json()["error"], str)


def test_schema_documents_both_endpoints_and_their_errors(api):
    schema = api.get("/api/schema/", HTTP_ACCEPT="application/json").json()
    transactions = schema["paths"]["/api/billing/wallet/transactions"]["get"]
    assert {"200", "400", "401"} <= set(transactions["responses"])
    assert {p["name"] for p in transactions["parameters"]} >= {"page", "limit", "type"}
    assert {"200", "401"} <= set(schema["paths"]["/api/billing/wallet"]["get"]["responses"])


def test_support_entries_written_before_internal_notes_show_the_clinic_a_plain_sentence(api):
    org = make_org()
    staff = make_support_user(permissions=("billing.add_credit",))
    services.credit(  # as the admin wrote credits before: support's reason as the description
        org=org,
        amount_pence=500,
        type=EntryType.ADJUSTMENT,
        idempotency_key="old-admin-credit",
        description="Clinic owner is difficult, ticket #12",
        created_by=staff,
    )
    body = api.get("/api/billing/wallet/transactions", **auth_header(org)).json()
    assert [r["description"] for r in body["transactions"]] == ["Credit from Voxanne support"]
