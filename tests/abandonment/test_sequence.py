"""Who gets which abandonment email, when, and the £10 that comes with email 3."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone

from abandonment.models import AbandonmentEmail, EmailState, OptOut
from abandonment.services import credit_key, run_abandonment
from billing import services as billing_services
from billing.models import EntryType, LedgerEntry, Wallet
from tests.factories import fund, make_abandoned_org, make_event_at, make_org, owner_of
from voxanne.services import email_verification_token, verify_email

pytestmark = pytest.mark.django_db

SUBJECT_1 = "Your AI receptionist is almost ready"
SUBJECT_3 = "We added £10 to your account"


def hours_from_now(hours: float):
    return timezone.now() + timedelta(hours=hours)


def sent_sequences(org) -> list[int]:
    return list(
        AbandonmentEmail.objects.filter(org=org, state=EmailState.SENT)
        .order_by("sequence")
        .values_list("sequence", flat=True)
    )


def bonuses(org) -> list[LedgerEntry]:
    return list(LedgerEntry.objects.filter(org=org, type=EntryType.BONUS))


def test_an_empty_run_sends_nothing(mailoutbox):
    summary = run_abandonment()
    assert summary.as_dict() == {
        "candidates": 0,
        "sent": {"1": 0, "2": 0, "3": 0},
        "credited": 0,
        "failed": 0,
        "unconfirmed": 0,
        "dry_run": False,
    }
    assert mailoutbox == []


def test_email_1_goes_out_after_one_hour_and_not_before(mailoutbox):
    org = make_abandoned_org(hours_ago=0.5)
    assert run_abandonment().sent == {"1": 0, "2": 0, "3": 0}
    assert run_abandonment(now=hours_from_now(0.49)).sent["1"] == 0
    assert mailoutbox == []

    summary = run_abandonment(now=hours_from_now(0.5))
    assert summary.candidates == 1
    assert summary.sent == {"1": 1, "2": 0, "3": 0}
    [email] = mailoutbox
    assert email.subject == SUBJECT_1
    assert email.to == [owner_of(org).email]
    assert sent_sequences(org) == [1]


def test_email_2_goes_out_after_24_hours_naming_the_clinic(mailoutbox):
    named = make_abandoned_org(hours_ago=23.9, clinic_name="Harley Smiles")
    unnamed = make_abandoned_org(hours_ago=23.9, clinic_name=None)
    run_abandonment()
    assert [m.subject for m in mailoutbox] == [SUBJECT_1, SUBJECT_1]

    mailoutbox.clear()
    assert run_abandonment(now=hours_from_now(0.2)).sent == {"1": 0, "2": 2, "3": 0}
    subjects = {m.to[0]: m.subject for m in mailoutbox}
    assert subjects == {
        owner_of(named).email: "How many calls did Harley Smiles miss today?",
        owner_of(unnamed).email: "How many calls did your clinic miss today?",
    }
    assert sent_sequences(named) == [1, 2]


def test_email_3_after_48_hours_credits_exactly_1000_pence_bonus_once(mailoutbox):
    org = make_abandoned_org(hours_ago=47.9)
    run_abandonment()
    assert bonuses(org) == []

    summary = run_abandonment(now=hours_from_now(0.2))
    assert summary.sent == {"1": 0, "2": 0, "3": 1}
    assert summary.credited == 1
    assert mailoutbox[-1].subject == SUBJECT_3
    [bonus] = bonuses(org)
    assert bonus.amount_pence == 1000
    assert bonus.idempotency_key == credit_key(org.id)
    assert Wallet.objects.get(org=org).balance_pence == 1000
    assert AbandonmentEmail.objects.get(org=org, sequence=3).credit_applied is True

    for _ in range(2):
        again = run_abandonment(now=hours_from_now(30))
        assert again.credited == 0
        assert again.sent == {"1": 0, "2": 0, "3": 0}
    assert len(bonuses(org)) == 1
    assert Wallet.objects.get(org=org).balance_pence == 1000


def test_emails_1_and_2_give_no_credit(mailoutbox):
    org = make_abandoned_org(hours_ago=2)
    run_abandonment()
    run_abandonment(now=hours_from_now(23))
    assert sent_sequences(org) == [1, 2]
    assert bonuses(org) == []
    assert not AbandonmentEmail.objects.filter(credit_applied=True).exists()


def test_no_back_fill_an_org_first_seen_at_49_hours_gets_email_3_only(mailoutbox):
    org = make_abandoned_org(hours_ago=49)
    summary = run_abandonment()
    assert summary.sent == {"1": 0, "2": 0, "3": 1}
    assert [m.subject for m in mailoutbox] == [SUBJECT_3]
    run_abandonment(now=hours_from_now(100))
    assert sent_sequences(org) == [3]
    assert len(mailoutbox) == 1


def test_at_most_one_email_per_org_per_run_and_the_sequence_never_goes_back(mailoutbox):
    org = make_abandoned_org(hours_ago=25)
    assert run_abandonment().sent == {"1": 0, "2": 1, "3": 0}
    assert run_abandonment().sent == {"1": 0, "2": 0, "3": 0}
    assert sent_sequences(org) == [2]


def test_repeated_runs_are_idempotent(mailoutbox):
    orgs = [make_abandoned_org(hours_ago=h) for h in (2, 30, 50)]
    first = run_abandonment()
    assert first.sent == {"1": 1, "2": 1, "3": 1}
    for _ in range(3):
        again = run_abandonment()
        assert again.candidates == 3
        assert again.sent == {"1": 0, "2": 0, "3": 0}
        assert again.credited == 0
    assert len(mailoutbox) == 3
    assert AbandonmentEmail.objects.count() == 3
    assert sum(len(bonuses(org)) for org in orgs) == 1


def test_elapsed_time_counts_from_the_earliest_payment_view(mailoutbox):
    org = make_abandoned_org(hours_ago=0.5)
    make_event_at(org, "payment_viewed", timezone.now() - timedelta(hours=26))
    make_event_at(org, "payment_viewed", timezone.now() - timedelta(minutes=1))
    assert run_abandonment().sent == {"1": 0, "2": 1, "3": 0}


def test_completed_paid_never_viewed_unsubscribed_and_ownerless_orgs_are_skipped(mailoutbox):
    completed = make_abandoned_org(hours_ago=50)
    completed.onboarding_completed_at = timezone.now()
    completed.save()
    paid = make_abandoned_org(hours_ago=50)
    fund(paid, 2500)
    make_org("Never viewed")
    unsubscribed = make_abandoned_org(hours_ago=50)
    OptOut.objects.create(org=unsubscribed, email=owner_of(unsubscribed).email)
    ownerless = make_abandoned_org(hours_ago=50)
    ownerless.owner = None
    ownerless.save()
    abandoned = make_abandoned_org(hours_ago=50)

    summary = run_abandonment()
    assert summary.candidates == 1
    assert summary.sent == {"1": 0, "2": 0, "3": 1}
    assert [m.to for m in mailoutbox] == [[owner_of(abandoned).email]]
    assert set(AbandonmentEmail.objects.values_list("org_id", flat=True)) == {abandoned.id}
    assert LedgerEntry.objects.filter(type=EntryType.BONUS).count() == 1


def test_a_clinic_whose_browser_claims_it_paid_without_paying_still_gets_the_emails(mailoutbox):
    claims = make_abandoned_org(hours_ago=50)
    make_event_at(claims, "payment_success", timezone.now() - timedelta(hours=49))
    summary = run_abandonment()
    assert summary.sent == {"1": 0, "2": 0, "3": 1}
    assert [m.to for m in mailoutbox] == [[owner_of(claims).email]]


def test_a_clinic_that_paid_gets_no_email_whatever_its_telemetry_says(mailoutbox):
    silent = make_abandoned_org(hours_ago=50, clinic_name="Paid, never said")
    fund(silent, 2500)
    refunded = make_abandoned_org(hours_ago=50, clinic_name="Paid, then refunded")
    fund(refunded, 2500)
    with transaction.atomic():  # the card got it all back: it still paid once
        billing_services.record_money_gone(
            org=refunded,
            amount_pence=2500,
            type=EntryType.CARD_REFUND,
            idempotency_key="refund:re_test",
            description="Refund to card",
        )
    summary = run_abandonment()
    assert summary.candidates == 0 and mailoutbox == []
    assert not AbandonmentEmail.objects.exists()


def test_several_orgs_each_get_their_own_due_email(mailoutbox):
    early = make_abandoned_org(hours_ago=0.2, clinic_name="Early")
    first = make_abandoned_org(hours_ago=3, clinic_name="First")
    second = make_abandoned_org(hours_ago=30, clinic_name="Second")
    third = make_abandoned_org(hours_ago=60, clinic_name="Third")

    summary = run_abandonment()
    assert summary.candidates == 4
    assert summary.sent == {"1": 1, "2": 1, "3": 1}
    assert (sent_sequences(early), sent_sequences(first)) == ([], [1])
    assert (sent_sequences(second), sent_sequences(third)) == ([2], [3])
    assert bonuses(third) and not bonuses(second) and not bonuses(first)
    by_recipient = {m.to[0]: m.subject for m in mailoutbox}
    assert by_recipient[owner_of(second).email] == "How many calls did Second miss today?"


def test_dry_run_sends_and_writes_nothing(mailoutbox):
    make_abandoned_org(hours_ago=2)
    make_abandoned_org(hours_ago=50)
    summary = run_abandonment(dry_run=True)
    assert summary.as_dict()["sent"] == {"1": 1, "2": 0, "3": 1}
    assert summary.dry_run is True
    assert summary.credited == 0
    assert mailoutbox == []
    assert not AbandonmentEmail.objects.exists()
    assert not LedgerEntry.objects.filter(type=EntryType.BONUS).exists()


def test_the_bonus_waits_for_the_owner_to_verify_their_address(mailoutbox):
    org = make_abandoned_org(hours_ago=50, verified=False)
    summary = run_abandonment()
    assert summary.sent["3"] == 1 and summary.credited == 0
    assert Wallet.objects.get(org=org).balance_pence == 0
    assert run_abandonment().credited == 0  # still unverified: still nothing

    verify_email(token=email_verification_token(owner_of(org)))
    assert run_abandonment().credited == 1
    assert Wallet.objects.get(org=org).balance_pence == 1000
    assert run_abandonment().credited == 0
    assert LedgerEntry.objects.filter(org=org, type=EntryType.BONUS).count() == 1
    assert len(mailoutbox) == 1  # email 3 once, nothing else


def test_throwaway_signups_farming_the_bonus_get_nothing(mailoutbox):
    farmed = [make_abandoned_org(hours_ago=50, verified=False) for _ in range(3)]
    real = make_abandoned_org(hours_ago=50)
    assert run_abandonment().credited == 1
    assert not LedgerEntry.objects.filter(org__in=farmed).exists()
    assert Wallet.objects.get(org=real).balance_pence == 1000
