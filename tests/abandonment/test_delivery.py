"""How the emails are sent: Django's email framework, a real SMTP server, failures per org."""

from __future__ import annotations

import socket
from datetime import timedelta

import pytest
from django.utils import timezone

from abandonment.models import AbandonmentEmail, EmailState
from abandonment.services import run_abandonment
from billing.models import EntryType, LedgerEntry
from tests.abandonment.conftest import free_port
from tests.factories import make_abandoned_org, owner_of

pytestmark = pytest.mark.django_db


def test_email_has_text_and_html_parts_a_wizard_link_and_one_click_unsubscribe(
    settings, mailoutbox
):
    settings.APP_BASE_URL = "https://app.voxanne.test"
    org = make_abandoned_org(hours_ago=25, clinic_name="Bright <Teeth> & Co")
    run_abandonment()
    [email] = mailoutbox
    html, mimetype = email.alternatives[0]
    assert mimetype == "text/html"
    assert "https://app.voxanne.test/onboarding" in email.body
    assert "https://app.voxanne.test/onboarding" in html
    assert "Bright <Teeth> & Co" in email.body  # plain text is not HTML-escaped
    assert "Bright &lt;Teeth&gt; &amp; Co" in html
    unsubscribe = email.extra_headers["List-Unsubscribe"]
    assert unsubscribe.startswith("<https://app.voxanne.test/api/abandonment/unsubscribe/")
    assert email.extra_headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert unsubscribe[1:-1] in email.body and unsubscribe[1:-1] in html
    assert email.from_email == settings.DEFAULT_FROM_EMAIL
    assert email.to == [owner_of(org).email]


def test_sent_over_real_smtp_with_both_parts_and_headers(smtp_settings):
    org = make_abandoned_org(hours_ago=2)
    assert run_abandonment().sent["1"] == 1
    [(recipients, message)] = smtp_settings.messages
    assert recipients == [owner_of(org).email]
    assert message["Subject"] == "Your AI receptionist is almost ready"
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert message["List-Unsubscribe"].strip().startswith("<http://")  # may be folded
    assert {part.get_content_type() for part in message.walk()} >= {"text/plain", "text/html"}


def test_continues_past_a_recipient_the_smtp_server_refuses(smtp_settings, caplog):
    orgs = [make_abandoned_org(hours_ago=50) for _ in range(3)]
    refused = owner_of(orgs[1]).email
    smtp_settings.refuse.add(refused)

    with caplog.at_level("WARNING", logger="abandonment"):
        summary = run_abandonment()
    [warning] = [r for r in caplog.records if r.levelname == "WARNING"]
    assert (warning.org_id, warning.sequence) == (str(orgs[1].pk), 3)
    assert summary.sent["3"] == 2
    assert summary.failed == 1
    assert summary.credited == 2
    assert sorted(smtp_settings.recipients()) == sorted(
        owner_of(org).email for org in (orgs[0], orgs[2])
    )
    # The refused one: no sent record, no credit...
    assert not AbandonmentEmail.objects.filter(org=orgs[1]).exists()
    assert not LedgerEntry.objects.filter(org=orgs[1], type=EntryType.BONUS).exists()

    # ...and the next run retries it, without resending to the others.
    smtp_settings.refuse.clear()
    again = run_abandonment()
    assert again.sent["3"] == 1 and again.failed == 0 and again.credited == 1
    assert smtp_settings.recipients().count(refused) == 1
    assert len(smtp_settings.messages) == 3
    assert LedgerEntry.objects.filter(type=EntryType.BONUS).count() == 3


def test_email_service_down_claims_and_credits_nothing_and_the_next_run_sends(
    settings, smtp_server, smtp_settings
):
    org = make_abandoned_org(hours_ago=50)
    settings.EMAIL_PORT = free_port()  # nothing listens there
    summary = run_abandonment()
    assert summary.sent == {"1": 0, "2": 0, "3": 0}
    assert not AbandonmentEmail.objects.exists()
    assert not LedgerEntry.objects.filter(type=EntryType.BONUS).exists()

    settings.EMAIL_PORT = smtp_server.port
    assert run_abandonment().sent["3"] == 1
    assert LedgerEntry.objects.filter(org=org, type=EntryType.BONUS).count() == 1


def test_a_stale_claim_of_a_dead_run_is_never_resent_but_email_3_is_still_credited(
    settings, mailoutbox
):
    """A run killed mid-send leaves `sending` claims: settled as unconfirmed, not resent."""
    settings.ABANDONMENT_CLAIM_TIMEOUT_SECONDS = 600
    org = make_abandoned_org(hours_ago=50)
    fresh = make_abandoned_org(hours_ago=50)
    for claimed, minutes_ago in ((org, 11), (fresh, 1)):
        AbandonmentEmail.objects.create(
            org=claimed,
            sequence=3,
            state=EmailState.SENDING,
            recipient=owner_of(claimed).email,
            subject="We added £10 to your account",
            claim_token="00000000-0000-0000-0000-000000000001",
            claimed_at=timezone.now() - timedelta(minutes=minutes_ago),
        )

    summary = run_abandonment()
    assert summary.unconfirmed == 1
    assert summary.sent == {"1": 0, "2": 0, "3": 0}
    assert mailoutbox == []
    stale = AbandonmentEmail.objects.get(org=org)
    assert (stale.state, stale.credit_applied) == (EmailState.UNCONFIRMED, True)
    assert LedgerEntry.objects.filter(org=org, type=EntryType.BONUS).count() == 1
    # A claim younger than the timeout belongs to a live run: left alone, no credit yet.
    live = AbandonmentEmail.objects.get(org=fresh)
    assert (live.state, live.credit_applied) == (EmailState.SENDING, False)
    assert not LedgerEntry.objects.filter(org=fresh, type=EntryType.BONUS).exists()


def test_free_port_is_really_closed():
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", free_port()), 1):
        pass
