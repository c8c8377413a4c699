"""Support staff move money only through the refund and credit screens, each at most once."""

from __future__ import annotations

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.messages import get_messages
from django.test import Client

from billing.models import EntryType, LedgerEntry, Wallet
from tests.billing.concurrently import run_at_once
from tests.factories import auth_header, charge, fund, make_org, make_support_user

VIEW = ("voxanne.view_organization", "billing.view_wallet", "billing.view_ledgerentry")
REFUNDER = (*VIEW, "billing.issue_refund")
CREDITOR = (*VIEW, "billing.add_credit")


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def org_page(org) -> str:
    return f"/admin/voxanne/organization/{org.pk}/change/"


def refund_page(entry) -> str:
    return f"/admin/billing/ledgerentry/{entry.pk}/refund/"


def credit_page(org) -> str:
    return f"/admin/billing/wallet/{Wallet.objects.get(org=org).pk}/credit/"


def rendered_form(client: Client, url: str) -> dict[str, str]:
    """The form as the page renders it (with its nonce), ready to submit."""
    response = client.get(url)
    assert response.status_code == 200
    form = response.context["form"]
    return {name: str(form[name].value()) for name in form.fields if name != "confirm"}


def refund_form(client, entry, **changes) -> dict[str, str]:
    return {
        **rendered_form(client, refund_page(entry)),
        "reason": "Number never worked",
        "confirm": "on",
        **changes,
    }


def messages_of(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


def refunds_of(entry) -> list[LedgerEntry]:
    return list(LedgerEntry.objects.filter(reverses=entry))


@pytest.mark.django_db
def test_org_page_shows_balance_and_ledger_newest_first_with_who_and_why():
    org = make_org("Bright Smiles")
    fund(org, 2500)
    debit = charge(org, 1000)
    agent = make_support_user(permissions=REFUNDER)
    client = client_for(agent)
    client.post(refund_page(debit), refund_form(client, debit, amount="4.00"))
    page = client.get(org_page(org)).content.decode()
    assert "£19.00" in page  # 2500 - 1000 + 400
    assert "Number never worked" in page and agent.email in page
    assert page.index("Number never worked") < page.index("Phone number +447700900001")
    history = client.get(org_page(org).replace("change/", "history/")).content.decode()
    assert "Refunded £4.00" in history


@pytest.mark.django_db
def test_refund_is_offered_only_to_staff_with_the_issue_refund_permission():
    org = make_org()
    fund(org, 1000)
    debit = charge(org, 1000)
    viewer = client_for(make_support_user(permissions=VIEW))
    assert "Issue refund" not in viewer.get(org_page(org)).content.decode()
    assert viewer.get(refund_page(debit)).status_code == 403
    response = viewer.post(
        refund_page(debit),
        {
            "amount": "10.00",
            "reason": "x",
            "confirm": "on",
            "nonce": "6f1c2a7e-1b7e-4b59-9d0b-4b8e5c0f8a11",
        },
    )
    assert response.status_code == 403
    assert refunds_of(debit) == []
    refunder = client_for(make_support_user(permissions=REFUNDER))
    assert "Issue refund" in refunder.get(org_page(org)).content.decode()


@pytest.mark.django_db
def test_refund_form_defaults_to_what_is_still_refundable():
    org = make_org()
    fund(org, 1000)
    debit = charge(org, 1000)
    client = client_for(make_support_user(permissions=REFUNDER))
    client.post(refund_page(debit), refund_form(client, debit, amount="3.00"))
    assert rendered_form(client, refund_page(debit))["amount"] == "7.00"


@pytest.mark.django_db
def test_issuing_a_refund_records_who_and_why_logs_it_and_returns_to_the_clinic():
    org = make_org()
    fund(org, 1000)
    debit = charge(org, 1000)
    agent = make_support_user(permissions=REFUNDER)
    client = client_for(agent)
    response = client.post(refund_page(debit), refund_form(client, debit))
    assert response.status_code == 302 and response["Location"] == org_page(org)
    [refund] = refunds_of(debit)
    assert (refund.amount_pence, refund.created_by, refund.internal_note) == (
        1000,
        agent,
        "Number never worked",
    )
    log = LogEntry.objects.get(object_id=str(org.pk))
    assert log.user == agent and "Number never worked" in log.change_message
    assert any("Refunded £10.00" in m for m in messages_of(response))
    assert Wallet.objects.get(org=org).balance_pence == 1000


@pytest.mark.django_db
def test_submitting_the_same_refund_form_twice_refunds_once():
    org = make_org()
    fund(org, 1000)
    debit = charge(org, 1000)
    client = client_for(make_support_user(permissions=REFUNDER))
    form = refund_form(client, debit, amount="6.00")
    first = client.post(refund_page(debit), form)
    second = client.post(refund_page(debit), form)  # double click / back button
    assert first.status_code == second.status_code == 302
    assert [r.amount_pence for r in refunds_of(debit)] == [600]
    assert any("already issued" in m for m in messages_of(second))
    assert LogEntry.objects.filter(object_id=str(org.pk)).count() == 1
    # Back button, amount edited, same rendered form: refused, still one refund.
    third = client.post(refund_page(debit), {**form, "amount": "1.00"})
    assert third.status_code == 200
    assert "already submitted" in third.content.decode()
    assert len(refunds_of(debit)) == 1


@pytest.mark.django_db
def test_over_refunding_is_refused_with_a_clear_message_on_the_form():
    org = make_org()
    fund(org, 1000)
    debit = charge(org, 1000)
    client = client_for(make_support_user(permissions=REFUNDER))
    response = client.post(refund_page(debit), refund_form(client, debit, amount="10.01"))
    assert response.status_code == 200
    assert "A refund can be at most £10.00" in response.content.decode()
    assert refunds_of(debit) == []


@pytest.mark.django_db
@pytest.mark.parametrize(
    "changes,field",
    [
        ({"reason": "   "}, "reason"),
        ({"confirm": ""}, "confirm"),
        ({"amount": "ten"}, "amount"),
        ({"amount": "0"}, "amount"),
        ({"amount": "1.005"}, "amount"),
    ],
)
def test_refund_needs_a_reason_a_confirmation_and_an_amount_in_pounds(changes, field):
    org = make_org()
    fund(org, 1000)
    debit = charge(org, 1000)
    client = client_for(make_support_user(permissions=REFUNDER))
    data = {k: v for k, v in refund_form(client, debit, **changes).items() if v}
    response = client.post(refund_page(debit), data)
    assert response.status_code == 200
    assert field in response.context["form"].errors
    assert refunds_of(debit) == []


@pytest.mark.django_db
def test_a_credit_cannot_be_refunded():
    org = make_org()
    topup = fund(org, 1000)
    client = client_for(make_support_user(permissions=REFUNDER))
    response = client.get(refund_page(topup))
    assert response.status_code == 302
    assert "Only a charge can be refunded." in messages_of(response)


@pytest.mark.django_db(transaction=True)
def test_two_agents_refunding_the_same_charge_at_once_refund_it_once():
    org = make_org()
    fund(org, 1000)
    debit = charge(org, 1000)
    agents = [client_for(make_support_user(permissions=REFUNDER)) for _ in range(2)]
    forms = [refund_form(agent, debit) for agent in agents]  # two pages, two nonces

    responses = run_at_once(lambda i: agents[i].post(refund_page(debit), forms[i]), 2)
    assert sorted(r.status_code for r in responses) == [200, 302], responses
    refused = next(r for r in responses if r.status_code == 200)
    assert "already been refunded in full" in refused.content.decode()
    assert [r.amount_pence for r in refunds_of(debit)] == [1000]
    assert Wallet.objects.get(org=org).balance_pence == 1000


@pytest.mark.django_db(transaction=True)
def test_the_same_form_submitted_from_two_tabs_at_once_refunds_once():
    org = make_org()
    fund(org, 1000)
    debit = charge(org, 1000)
    client = client_for(make_support_user(permissions=REFUNDER))
    form = refund_form(client, debit, amount="2.50")
    responses = run_at_once(
        lambda i: client_for_same_session(client).post(refund_page(debit), form), 4
    )
    assert {r.status_code for r in responses} == {302}, responses
    assert [r.amount_pence for r in refunds_of(debit)] == [250]
    assert LogEntry.objects.filter(object_id=str(org.pk)).count() == 1


def client_for_same_session(client: Client) -> Client:
    twin = Client()
    twin.cookies = client.cookies
    return twin


@pytest.mark.django_db
@pytest.mark.parametrize("model", ["ledgerentry", "wallet"])
def test_ledger_and_wallet_are_view_only_even_for_a_superuser(model):
    org = make_org()
    entry = fund(org, 1000)
    obj = entry if model == "ledgerentry" else Wallet.objects.get(org=org)
    client = client_for(make_support_user(superuser=True))
    base = f"/admin/billing/{model}/"
    assert client.get(base + "add/").status_code == 403
    assert client.get(f"{base}{obj.pk}/delete/").status_code == 403
    view = client.get(f"{base}{obj.pk}/change/")
    assert view.status_code == 200 and 'name="_save"' not in view.content.decode()
    assert client.post(f"{base}{obj.pk}/change/", {"amount_pence": 1}).status_code == 403
    assert LedgerEntry.objects.get(pk=entry.pk).amount_pence == 1000


@pytest.mark.django_db
def test_add_credit_needs_its_own_permission():
    org = make_org()
    refunder = client_for(make_support_user(permissions=REFUNDER))
    assert "Add credit" not in refunder.get(org_page(org)).content.decode()
    assert refunder.get(credit_page(org)).status_code == 403
    creditor = client_for(make_support_user(permissions=CREDITOR))
    assert "Add credit" in creditor.get(org_page(org)).content.decode()


@pytest.mark.django_db
@pytest.mark.parametrize("kind", [EntryType.TOPUP, EntryType.ADJUSTMENT])
def test_adding_credit_records_who_and_why_once_even_when_submitted_twice(kind):
    org = make_org()
    agent = make_support_user(permissions=CREDITOR)
    client = client_for(agent)
    form = {
        **rendered_form(client, credit_page(org)),
        "type": kind,
        "amount": "£1,250.50",
        "reason": "Paid by bank transfer",
        "confirm": "on",
    }
    first = client.post(credit_page(org), form)
    second = client.post(credit_page(org), form)
    assert first.status_code == second.status_code == 302
    [credit] = LedgerEntry.objects.for_org(org)
    assert (credit.type, credit.amount_pence, credit.created_by, credit.internal_note) == (
        kind,
        125050,
        agent,
        "Paid by bank transfer",
    )
    assert Wallet.objects.get(org=org).balance_pence == 125050
    assert LogEntry.objects.filter(object_id=str(org.pk)).count() == 1
    assert any("already added" in m for m in messages_of(second))


@pytest.mark.django_db
def test_the_ledger_list_finds_a_clinics_entries_by_link_and_by_search():
    mine, other = make_org("Bright Smiles"), make_org("Other Dental")
    fund(mine, 1000)
    fund(other, 777)
    client = client_for(make_support_user(permissions=VIEW))
    for query in (f"org__id__exact={mine.pk}", "q=Bright", f"q={mine.pk}"):
        response = client.get(f"/admin/billing/ledgerentry/?{query}")
        assert response.status_code == 200, query
        assert list(response.context["cl"].queryset) == list(LedgerEntry.objects.for_org(mine))


@pytest.mark.django_db
@pytest.mark.parametrize(
    "typed,pence",
    [
        ("12", 1200),
        ("12.5", 1250),
        ("12.50", 1250),
        (" £12.50 ", 1250),
        ("1,234.56", 123456),
        ("1,000,000", 100_000_000),
    ],
)
def test_credit_accepts_plain_amounts_in_pounds(typed, pence):
    org = make_org()
    client = client_for(make_support_user(permissions=CREDITOR))
    form = {
        **rendered_form(client, credit_page(org)),
        "type": EntryType.ADJUSTMENT,
        "amount": typed,
        "reason": "Goodwill",
        "confirm": "on",
    }
    assert client.post(credit_page(org), form).status_code == 302
    [credit] = LedgerEntry.objects.for_org(org)
    assert credit.amount_pence == pence


@pytest.mark.django_db
@pytest.mark.parametrize(
    "typed",
    [
        "10,50",  # a decimal comma: not £1,050
        "1_000",
        "1,00",
        "12,34.00",
        "1234,567",
        ",123",
        "١٢",  # Arabic-Indic digits
        "１２",  # full-width digits
        "+12",
        "-12",
        "1e3",
        "Infinity",
        "NaN",
        "12.",
        ".5",
        "1 000",
    ],
)
def test_credit_and_refund_refuse_amounts_that_are_not_plain_pounds(typed):
    org = make_org()
    fund(org, 1000)
    debit = charge(org, 1000)
    client = client_for(make_support_user(permissions=(*CREDITOR, "billing.issue_refund")))
    credit_form = {
        **rendered_form(client, credit_page(org)),
        "type": EntryType.ADJUSTMENT,
        "amount": typed,
        "reason": "Goodwill",
        "confirm": "on",
    }
    credit_answer = client.post(credit_page(org), credit_form)
    refund_answer = client.post(refund_page(debit), refund_form(client, debit, amount=typed))
    for answer in (credit_answer, refund_answer):
        assert answer.status_code == 200
        assert "amount" in answer.context["form"].errors
    assert Wallet.objects.get(org=org).balance_pence == 0
    assert refunds_of(debit) == []


@pytest.mark.django_db
def test_supports_reason_stays_internal_and_the_clinic_sees_a_plain_description(api):
    org = make_org()
    fund(org, 1000)
    debit = charge(org, 1000)
    agent = make_support_user(permissions=(*CREDITOR, "billing.issue_refund"))
    client = client_for(agent)
    refund_reason = "Owner was rude on the phone; refunding to calm things down"
    client.post(refund_page(debit), refund_form(client, debit, amount="4.00", reason=refund_reason))
    credit_reason = "Goodwill: ticket #4411, escalated by Sam"
    for kind in (EntryType.ADJUSTMENT, EntryType.TOPUP):
        client.post(
            credit_page(org),
            {
                **rendered_form(client, credit_page(org)),
                "type": kind,
                "amount": "1.00",
                "reason": credit_reason,
                "confirm": "on",
            },
        )

    answer = api.get("/api/billing/wallet/transactions", **auth_header(org))
    assert answer.status_code == 200
    assert refund_reason not in answer.content.decode()
    assert credit_reason not in answer.content.decode()
    newest = [(r["type"], r["description"]) for r in answer.json()["transactions"][:3]]
    assert newest == [
        ("topup", "Top-up"),
        ("adjustment", "Credit from Voxanne support"),
        ("refund", "Refund from Voxanne support"),
    ]

    notes = {e.type: e.internal_note for e in LedgerEntry.objects.for_org(org) if e.created_by}
    assert notes == {
        EntryType.REFUND: refund_reason,
        EntryType.ADJUSTMENT: credit_reason,
        EntryType.TOPUP: credit_reason,
    }
    page = client.get(org_page(org)).content.decode()
    assert "Owner was rude on the phone" in page and "ticket #4411" in page
