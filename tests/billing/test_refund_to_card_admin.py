"""Support refunds the unspent part of a top-up to the card, and unfreezes wallets on hold,
through Django admin as staff users: debit first, then Stripe (the double), at most once."""

from __future__ import annotations

import pytest
from django.contrib.admin.models import LogEntry

from billing import services
from billing import stripe as payments
from billing.models import EntryType, LedgerEntry, TopUp, Wallet
from billing.topups import REFUND_DEBITED_AS
from sandbox.stripe import stripe_error
from tests.billing.conftest import assert_books_balance, balance
from tests.billing.test_admin_money import client_for, messages_of, org_page, rendered_form
from tests.billing.test_stripe_webhook import paid_topup
from tests.factories import charge, fund, make_support_user

pytestmark = pytest.mark.django_db

VIEW = ("voxanne.view_organization", "billing.view_wallet", "billing.view_topup")
CARD_REFUNDER = (*VIEW, "billing.refund_to_card")
UNFREEZER = (*VIEW, "billing.unfreeze_wallet")


def refund_page(topup) -> str:
    return f"/admin/billing/topup/{topup.pk}/refund-to-card/"


def card_refund_form(client, topup, **changes) -> dict[str, str]:
    return {
        **rendered_form(client, refund_page(topup)),
        "reason": "Clinic closed: refund what is left",
        "confirm": "on",
        **changes,
    }


def card_refunds(org) -> list[LedgerEntry]:
    return list(LedgerEntry.objects.filter(org=org, type=EntryType.CARD_REFUND))


@pytest.fixture
def spent_topup(api, stripe_double):
    """A £50 top-up of which £10 went on a phone number: £40 unspent."""
    topup = paid_topup(api, stripe_double, 5000)
    charge(topup.org, 1000)
    # charge.refunded is sent from the double's thread, which cannot see this test's
    # transaction: hold it, and deliver it from here.
    stripe_double.hold()
    return topup


def test_the_form_offers_the_unspent_part_and_refunds_to_the_card_once(stripe_double, spent_topup):
    topup, org = spent_topup, spent_topup.org
    agent = make_support_user(permissions=CARD_REFUNDER)
    client = client_for(agent)
    assert (
        "Refund to card" in client.get(f"/admin/billing/topup/{topup.pk}/change/").content.decode()
    )
    form = card_refund_form(client, topup)
    assert form["amount"] == "40.00"  # min(£50 paid - £0 refunded, £40 balance)
    form["amount"] = "15.00"
    first = client.post(refund_page(topup), form)
    second = client.post(refund_page(topup), form)  # a double submit: the same nonce
    assert first.status_code == second.status_code == 302
    assert first["Location"] == org_page(org)
    [debit] = card_refunds(org)
    assert (debit.amount_pence, debit.created_by) == (-1500, agent)
    assert debit.idempotency_key == f"card-refund:{topup.pk}:{form['nonce']}"
    [refund] = stripe_double.refunds.values()
    assert refund["amount"] == 1500
    assert refund["payment_intent"] == topup.payment_intent_id
    assert refund["metadata"][REFUND_DEBITED_AS] == debit.idempotency_key
    assert any("Refunded £15.00 of top-up" in m for m in messages_of(first))
    assert any("already issued" in m for m in messages_of(second))
    [log] = LogEntry.objects.filter(object_id=str(org.pk))
    assert log.user == agent and "Clinic closed" in log.change_message
    # The replayed create sent no second event; the charge.refunded debits nothing more.
    assert stripe_double.release("sent") == [200]
    assert balance(org) == 2500 and len(card_refunds(org)) == 1
    topup.refresh_from_db()
    assert (topup.status, topup.refunded_pence) == ("partially_refunded", 1500)
    assert_books_balance(org)
    assert rendered_form(client, refund_page(topup))["amount"] == "25.00"


def test_the_rest_of_a_top_up_refunded_to_the_card_marks_it_refunded(stripe_double, api):
    topup = paid_topup(api, stripe_double, 3000)
    stripe_double.hold()
    client = client_for(make_support_user(permissions=CARD_REFUNDER))
    client.post(refund_page(topup), card_refund_form(client, topup))
    assert stripe_double.release("sent") == [200]
    topup.refresh_from_db()
    assert (topup.status, topup.refunded_pence, balance(topup.org)) == ("refunded", 3000, 0)
    assert rendered_form(client, refund_page(topup))["amount"] == "0.00"


def test_no_more_than_the_unspent_part_goes_back(stripe_double, spent_topup):
    client = client_for(make_support_user(permissions=CARD_REFUNDER))
    response = client.post(
        refund_page(spent_topup), card_refund_form(client, spent_topup, amount="40.01")
    )
    assert response.status_code == 200
    assert "At most £40.00 of this top-up" in response.content.decode()
    assert card_refunds(spent_topup.org) == [] and stripe_double.calls["create_refund"] == 0


def test_what_support_refunded_counts_before_stripe_reports_it(stripe_double, spent_topup):
    fund(spent_topup.org, 5000)  # the wallet holds more than this top-up: £90
    client = client_for(make_support_user(permissions=CARD_REFUNDER))
    client.post(refund_page(spent_topup), card_refund_form(client, spent_topup, amount="30.00"))
    # charge.refunded still held: Stripe's count on the top-up says £0 so far.
    assert TopUp.objects.get(pk=spent_topup.pk).refunded_pence == 0
    assert rendered_form(client, refund_page(spent_topup))["amount"] == "20.00"  # £50 - £30


def test_a_refund_stripe_refuses_is_reversed_and_never_retried(stripe_double, spent_topup):
    org = spent_topup.org
    client = client_for(make_support_user(permissions=CARD_REFUNDER))
    stripe_double.refuse_refunds("Charge ch_x has been disputed.")
    form = card_refund_form(client, spent_topup, amount="20.00")
    first = client.post(refund_page(spent_topup), form)
    assert first.status_code == 302
    assert any("Stripe refused the refund of £20.00" in m for m in messages_of(first))
    [debit] = card_refunds(org)
    [reversal] = debit.reversals.all()
    assert (reversal.type, reversal.amount_pence) == (EntryType.REFUND, 2000)
    assert reversal.idempotency_key == f"card-refund-reversal:{debit.pk}"
    assert balance(org) == 4000 and stripe_double.refunds == {}
    client.post(refund_page(spent_topup), form)  # the same form again
    assert stripe_double.calls["create_refund"] == 1  # not asked again: it refused
    assert balance(org) == 4000 and len(card_refunds(org)) == 1
    assert "refused by Stripe" in LogEntry.objects.get(object_id=str(org.pk)).change_message
    assert_books_balance(org)


def test_stripe_not_answering_keeps_the_debit_and_the_same_form_finishes_it(
    stripe_double, spent_topup
):
    org = spent_topup.org
    client = client_for(make_support_user(permissions=CARD_REFUNDER))
    unavailable = stripe_error(503, "api_error", "Stripe is down")
    stripe_double.fail("create_refund", unavailable, times=1 + payments.MAX_NETWORK_RETRIES)
    form = card_refund_form(client, spent_topup, amount="20.00")
    first = client.post(refund_page(spent_topup), form)
    assert first.status_code == 200
    assert "submit this same form again" in first.content.decode()
    assert balance(org) == 2000 and stripe_double.refunds == {}  # the debit stands
    second = client.post(refund_page(spent_topup), form)
    assert second.status_code == 302
    [refund] = stripe_double.refunds.values()
    assert refund["amount"] == 2000 and len(card_refunds(org)) == 1
    assert stripe_double.release("sent") == [200]
    assert balance(org) == 2000
    assert_books_balance(org)


def test_refund_to_card_needs_its_own_permission(stripe_double, spent_topup):
    viewer = client_for(make_support_user(permissions=(*VIEW, "billing.issue_refund")))
    page = viewer.get(f"/admin/billing/topup/{spent_topup.pk}/change/").content.decode()
    assert "Refund to card" not in page
    assert viewer.get(refund_page(spent_topup)).status_code == 403
    posted = {
        "amount": "10.00",
        "reason": "x",
        "confirm": "on",
        "nonce": "6f1c2a7e-1b7e-4b59-9d0b-4b8e5c0f8a11",
    }
    assert viewer.post(refund_page(spent_topup), posted).status_code == 403
    assert card_refunds(spent_topup.org) == [] and stripe_double.calls["create_refund"] == 0


def test_a_refund_naming_a_debit_that_does_not_stand_is_debited(stripe_double, spent_topup):
    """Metadata can be typed in Stripe's dashboard: only a standing debit of ours counts."""
    payments.create_refund(
        payment_intent_id=spent_topup.payment_intent_id,
        amount_pence=500,
        idempotency_key="dashboard-1",
        metadata={REFUND_DEBITED_AS: f"card-refund:{spent_topup.pk}:forged"},
    )
    assert stripe_double.release("sent") == [200]
    [debit] = card_refunds(spent_topup.org)
    assert debit.amount_pence == -500 and debit.idempotency_key.startswith("refund:re_")
    assert balance(spent_topup.org) == 3500


# --- Frozen wallets ---------------------------------------------------------------------------


def unfreeze_page(org) -> str:
    return f"/admin/billing/wallet/{Wallet.objects.get(org=org).pk}/unfreeze/"


@pytest.fixture
def frozen_org(api, stripe_double):
    topup = paid_topup(api, stripe_double, 5000)
    stripe_double.open_dispute(next(iter(stripe_double.charges)))
    assert Wallet.objects.get(org=topup.org).frozen_at is not None
    return topup.org


def test_support_sees_frozen_wallets_and_unfreezes_one_with_a_reason(frozen_org):
    agent = make_support_user(permissions=UNFREEZER)
    client = client_for(agent)
    listed = client.get("/admin/billing/wallet/?frozen_at__isempty=0").content.decode()
    assert str(frozen_org) in listed
    page = client.get(org_page(frozen_org)).content.decode()
    assert "Frozen since" in page and "Payment dispute dp_test_" in page
    assert unfreeze_page(frozen_org) in page
    form = client.get(unfreeze_page(frozen_org))
    assert "1 payment dispute(s) still open" in form.content.decode()
    response = client.post(
        unfreeze_page(frozen_org), {"reason": "Bank confirmed it was a mistake", "confirm": "on"}
    )
    assert response.status_code == 302 and response["Location"] == org_page(frozen_org)
    assert Wallet.objects.get(org=frozen_org).frozen_at is None
    [log] = LogEntry.objects.filter(object_id=str(frozen_org.pk))
    assert log.user == agent and "Bank confirmed it was a mistake" in log.change_message
    assert "Payment dispute dp_test_" in log.change_message
    assert any("Unfroze the wallet" in m for m in messages_of(response))
    charge(frozen_org, 1000)  # spending works again
    again = client.post(unfreeze_page(frozen_org), {"reason": "again", "confirm": "on"})
    assert any("was not frozen" in m for m in messages_of(again))
    assert LogEntry.objects.filter(object_id=str(frozen_org.pk)).count() == 1


def test_unfreezing_needs_a_reason_and_the_permission(frozen_org):
    viewer = client_for(make_support_user(permissions=VIEW))
    assert unfreeze_page(frozen_org) not in viewer.get(org_page(frozen_org)).content.decode()
    assert viewer.get(unfreeze_page(frozen_org)).status_code == 403
    posted = {"reason": "please", "confirm": "on"}
    assert viewer.post(unfreeze_page(frozen_org), posted).status_code == 403
    agent = client_for(make_support_user(permissions=UNFREEZER))
    response = agent.post(unfreeze_page(frozen_org), {"reason": "   ", "confirm": "on"})
    assert response.status_code == 200
    assert Wallet.objects.get(org=frozen_org).frozen_at is not None
    with pytest.raises(services.WalletOnHold):
        services.refuse_spending_on_hold(Wallet.objects.get(org=frozen_org))


def test_money_refunded_to_the_card_cannot_also_be_refunded_to_the_wallet(
    stripe_double, spent_topup
):
    org = spent_topup.org
    support = (*CARD_REFUNDER, "billing.view_ledgerentry", "billing.issue_refund")
    client = client_for(make_support_user(permissions=support))
    client.post(refund_page(spent_topup), card_refund_form(client, spent_topup, amount="10.00"))
    [debit] = card_refunds(org)
    page = client.get(f"/admin/billing/ledgerentry/{debit.pk}/change/").content.decode()
    assert "Issue refund" not in page
    wallet_refund = f"/admin/billing/ledgerentry/{debit.pk}/refund/"
    form = {**rendered_form(client, wallet_refund), "reason": "oops", "confirm": "on"}
    response = client.post(wallet_refund, form)
    assert "cannot be refunded to the wallet" in response.content.decode()
    assert not LedgerEntry.objects.filter(org=org, type=EntryType.REFUND).exists()
    assert balance(org) == 3000
