"""The low-balance email: once per crossing below the wallet's line, re-armed above it."""

from __future__ import annotations

import pytest
from django.core import mail

from billing import services
from billing.models import Wallet
from tests.factories import auth_header, charge, fund, make_org

pytestmark = pytest.mark.django_db


@pytest.fixture
def spend(django_capture_on_commit_callbacks, celery_eager):
    """Debit the wallet as a real charge does; what is queued on commit runs."""

    def spend(org, pence: int):
        with django_capture_on_commit_callbacks(execute=True):
            return charge(org, pence)

    return spend


def low_balance_emails() -> list:
    return [m for m in mail.outbox if "wallet is low" in m.subject]


def test_one_email_per_crossing_below_the_line_rearmed_when_the_balance_rises(spend):
    org = make_org()
    fund(org, 1000)
    spend(org, 400)  # 600: still above 500
    assert low_balance_emails() == []
    spend(org, 200)  # 400: crossed
    spend(org, 100)  # 300: still below, same crossing
    assert len(low_balance_emails()) == 1
    fund(org, 1000)  # 1300: above the line again, re-armed
    assert Wallet.objects.get(org=org).low_balance_alerted_at is None
    spend(org, 900)  # 400: a second crossing
    assert len(low_balance_emails()) == 2


def test_the_email_has_text_and_html_with_the_balance(spend):
    org = make_org("Smile Dental")
    fund(org, 1000)
    spend(org, 750)
    (message,) = low_balance_emails()
    assert message.to == [org.owner.email]
    html, mime = message.alternatives[0]
    assert mime == "text/html"
    for part in (message.body, html):
        assert "£2.50" in part and "£5.00" in part and "Smile Dental" in part


def test_a_failed_send_gives_the_crossing_back_for_the_next_debit(spend, settings):
    org = make_org()
    fund(org, 1000)
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_TIMEOUT = "127.0.0.1", 9, 2
    spend(org, 600)  # the SMTP server refuses the connection
    assert Wallet.objects.get(org=org).low_balance_alerted_at is None
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    spend(org, 10)
    assert len(low_balance_emails()) == 1


def test_a_higher_line_set_by_the_clinic_applies_to_the_next_debit(spend):
    org = make_org()
    fund(org, 3000)
    services.set_low_balance_line(org=org, low_balance_pence=2000)
    spend(org, 1500)
    assert len(low_balance_emails()) == 1


def test_wallet_api_says_whether_the_balance_is_low(api):
    org = make_org()
    fund(org, 499)
    body = api.get("/api/billing/wallet", **auth_header(org)).json()
    assert body["low_balance_pence"] == 500 and body["is_low_balance"] is True
    fund(org, 1)
    assert api.get("/api/billing/wallet", **auth_header(org)).json()["is_low_balance"] is False
