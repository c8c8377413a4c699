"""A support agent refunds part of a top-up to the card in Django admin, in a real headless
Chromium, against the Stripe double: a double-submitted form debits once and makes one Stripe
refund. Screenshots under test-artifacts/."""

from __future__ import annotations

import logging

import pytest
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

from billing.models import EntryType, LedgerEntry, Wallet
from billing.topups import REFUND_DEBITED_AS
from tests.billing.conftest import new_topup, stripe_double
from tests.e2e.test_admin_refund_in_browser import (
    ARTIFACTS,
    VIEW_PERMISSIONS,
    browser,
    log_in,
    staff_user,
)
from tests.factories import make_org

pytestmark = pytest.mark.django_db(transaction=True)
__all__ = ["browser", "stripe_double"]  # fixtures


def test_agent_refunds_a_topup_to_the_card_once_despite_a_double_submit(
    live_server, browser, stripe_double, api, caplog
):
    caplog.set_level(logging.INFO, logger="voxanne.access")
    org = make_org("Card Refund Dental")
    topup = new_topup(api, org, 5000)
    stripe_double.pay(topup.stripe_session_id)  # the webhook credits £50
    topup.refresh_from_db()
    assert topup.status == "paid"
    agent = staff_user("cards@voxanne.test", *VIEW_PERMISSIONS, "view_topup", "refund_to_card")
    log_in(browser, live_server.url, agent.email)

    browser.get(f"{live_server.url}/admin/billing/topup/{topup.pk}/change/")
    # The admin's object tools are upper-cased by CSS: find the link by where it goes.
    browser.find_element(By.CSS_SELECTOR, "a[href$='/refund-to-card/']").click()
    amount = WebDriverWait(browser, 15).until(ec.presence_of_element_located((By.NAME, "amount")))
    assert amount.get_attribute("value") == "50.00"  # all of it is unspent
    amount.clear()
    amount.send_keys("20.00")
    browser.find_element(By.NAME, "reason").send_keys("Clinic over-topped up by mistake")
    browser.find_element(By.NAME, "confirm").click()
    ARTIFACTS.mkdir(exist_ok=True)
    browser.save_screenshot(str(ARTIFACTS / "admin-refund-to-card-page.png"))
    # As in the number-refund test: the same rendered form also posted once in the background,
    # so the server surely gets it at least twice.
    background = browser.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "const form = document.getElementById('topup_money_form');"
        "fetch(location.href, {method: 'POST', body: new FormData(form),"
        " credentials: 'same-origin', redirect: 'manual'}).then(r => done(r.type));"
    )
    assert background == "opaqueredirect"
    submit = browser.find_element(By.CSS_SELECTOR, "input[type=submit][name=_submit]")
    ActionChains(browser).double_click(submit).perform()
    WebDriverWait(browser, 15).until(ec.url_contains(f"/organization/{org.pk}/change/"))
    WebDriverWait(browser, 15).until(
        ec.presence_of_element_located((By.CSS_SELECTOR, "ul.messagelist"))
    )
    browser.save_screenshot(str(ARTIFACTS / "admin-after-refund-to-card.png"))

    def submits() -> int:
        prefix = f"POST /admin/billing/topup/{topup.pk}/refund-to-card/"
        return sum(r.getMessage().startswith(prefix) for r in caplog.records)

    WebDriverWait(browser, 10).until(lambda _: submits() >= 2)
    [debit] = LedgerEntry.objects.filter(org=org, type=EntryType.CARD_REFUND)
    assert (debit.amount_pence, debit.created_by_id) == (-2000, agent.pk)
    [refund] = stripe_double.refunds.values()
    assert refund["amount"] == 2000
    assert refund["metadata"][REFUND_DEBITED_AS] == debit.idempotency_key
    assert Wallet.objects.get(org=org).balance_pence == 3000
    topup.refresh_from_db()  # Stripe's charge.refunded arrived and debited nothing more
    assert (topup.status, topup.refunded_pence) == ("partially_refunded", 2000)
    assert "£30.00" in browser.page_source
