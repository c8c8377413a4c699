"""A support agent refunds a phone-number charge in Django admin, in a real headless Chromium.

Debian's chromium and chromium-driver (`make test` installs them when it can; conftest.py skips
these tests without them unless REQUIRE_BROWSER=1); Selenium drives the chromedriver on PATH.
The refund page's screenshot is kept under test-artifacts/.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.auth.models import Permission
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

from billing import services
from billing.models import EntryType, LedgerEntry, Wallet
from tests.e2e.conftest import browser_binaries
from tests.factories import PASSWORD, make_org
from voxanne.models import User

pytestmark = pytest.mark.django_db(transaction=True)

ARTIFACTS = Path(settings.BASE_DIR) / "test-artifacts"


@pytest.fixture
def browser(settings):
    # The live server speaks plain http: secure-only cookies would never come back.
    settings.SESSION_COOKIE_SECURE = False
    settings.CSRF_COOKIE_SECURE = False
    chromium, chromedriver = browser_binaries()
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1280,1000",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=chromedriver), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def staff_user(email: str, *codenames: str) -> User:
    user = User.objects.create_user(email=email, password=PASSWORD, is_staff=True)
    user.user_permissions.set(Permission.objects.filter(codename__in=codenames))
    return user


VIEW_PERMISSIONS = ("view_organization", "view_wallet", "view_ledgerentry", "view_user")


def clinic_charged_for_a_number():
    org = make_org("Browser Dental")
    services.credit(org=org, amount_pence=1000, type=EntryType.TOPUP, idempotency_key="topup")
    charge = services.debit(
        org=org,
        amount_pence=1000,
        type=EntryType.PHONE_PROVISIONING,
        idempotency_key="number",
        description="Phone number +14155550123",
    ).entry
    return org, charge


def log_in(driver, base_url: str, email: str) -> None:
    driver.get(f"{base_url}/admin/login/")
    driver.find_element(By.NAME, "username").send_keys(email)
    driver.find_element(By.NAME, "password").send_keys(PASSWORD)
    driver.find_element(By.CSS_SELECTOR, "input[type=submit]").click()
    WebDriverWait(driver, 15).until(ec.presence_of_element_located((By.ID, "user-tools")))


def test_agent_refunds_a_number_charge_once_despite_a_double_click(live_server, browser, caplog):
    caplog.set_level(logging.INFO, logger="voxanne.access")
    org, charge = clinic_charged_for_a_number()
    agent = staff_user("agent@voxanne.test", *VIEW_PERMISSIONS, "issue_refund")
    log_in(browser, live_server.url, agent.email)

    browser.get(f"{live_server.url}/admin/voxanne/organization/{org.pk}/change/")
    browser.find_element(By.LINK_TEXT, "Issue refund").click()
    reason = WebDriverWait(browser, 15).until(ec.presence_of_element_located((By.NAME, "reason")))
    reason.send_keys("Number never rang: customer goodwill")
    browser.find_element(By.NAME, "confirm").click()
    ARTIFACTS.mkdir(exist_ok=True)
    browser.save_screenshot(str(ARTIFACTS / "admin-refund-page.png"))
    # A double click does not always reach the server twice (the browser may cancel the first
    # navigation), so the same rendered form is also posted once in the background first.
    background_status = browser.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "const form = document.getElementById('ledgerentry_money_form');"
        "fetch(location.href, {method: 'POST', body: new FormData(form),"
        " credentials: 'same-origin', redirect: 'manual'}).then(r => done(r.type));"
    )
    assert background_status == "opaqueredirect"  # the form's first submission succeeded
    submit = browser.find_element(By.CSS_SELECTOR, "input[type=submit][name=_submit]")
    ActionChains(browser).double_click(submit).perform()
    WebDriverWait(browser, 15).until(ec.url_contains(f"/organization/{org.pk}/change/"))
    WebDriverWait(browser, 15).until(
        ec.presence_of_element_located((By.CSS_SELECTOR, "ul.messagelist"))
    )
    browser.save_screenshot(str(ARTIFACTS / "admin-after-refund.png"))

    def submits() -> int:
        prefix = f"POST /admin/billing/ledgerentry/{charge.pk}/refund/"
        return sum(r.getMessage().startswith(prefix) for r in caplog.records)

    WebDriverWait(browser, 10).until(lambda _: submits() >= 2)  # both clicks reached the server
    refunds = LedgerEntry.objects.filter(org=org, type=EntryType.REFUND)
    assert refunds.count() == 1
    refund = refunds.get()
    assert (refund.amount_pence, refund.reverses_id, refund.created_by_id) == (
        1000,
        charge.pk,
        agent.pk,
    )
    assert Wallet.objects.get(org=org).balance_pence == 1000
    assert "Refunded in full" in browser.page_source
    assert "£10.00" in browser.page_source


def test_staff_without_the_refund_permission_see_no_refund_action(live_server, browser):
    org, charge = clinic_charged_for_a_number()
    viewer = staff_user("viewer@voxanne.test", *VIEW_PERMISSIONS)
    log_in(browser, live_server.url, viewer.email)

    browser.get(f"{live_server.url}/admin/voxanne/organization/{org.pk}/change/")
    assert "Browser Dental" in browser.page_source
    assert "Phone number +14155550123" in browser.page_source
    assert browser.find_elements(By.LINK_TEXT, "Issue refund") == []
    browser.get(f"{live_server.url}/admin/billing/ledgerentry/{charge.pk}/refund/")
    assert "403" in browser.title or "Forbidden" in browser.page_source
    assert not LedgerEntry.objects.filter(org=org, type=EntryType.REFUND).exists()
