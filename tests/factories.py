"""Small factories: each test builds what it needs."""

from __future__ import annotations

import itertools
from datetime import timedelta

from django.contrib.auth.models import Permission
from django.utils import timezone

from billing import services as billing_services
from billing.models import EntryType, LedgerEntry
from onboarding.models import OnboardingEvent
from voice.models import Agent, Call
from voxanne import services
from voxanne.auth import tokens_for
from voxanne.models import Organization, User

PASSWORD = "correct-horse-battery-staple"
_counter = itertools.count(1)


def unique_email(prefix: str = "staff") -> str:
    return f"{prefix}{next(_counter)}-{timezone.now().timestamp():.0f}@clinic.test"


def make_org(clinic_name: str | None = "Smile Dental", email: str | None = None) -> Organization:
    """A clinic signed up the way a real one is (owner, and whatever signup sets up)."""
    result = services.sign_up(
        email=email or unique_email("owner"), password=PASSWORD, clinic_name=clinic_name
    )
    return result.organization


def owner_of(org: Organization) -> User:
    return User.objects.get(pk=org.owner_id)


def access_token(org: Organization) -> str:
    return tokens_for(owner_of(org))["access"]


def auth_header(org: Organization) -> dict[str, str]:
    return {"HTTP_AUTHORIZATION": f"Bearer {access_token(org)}"}


def make_agent(org: Organization, name: str = "Reception") -> Agent:
    """An agent row (no Vapi assistant); active unless the clinic already has its active one."""
    active = not Agent.objects.filter(org=org, is_active=True).exists()
    return Agent.objects.create(
        org=org, name=name, persona="friendly", voice="alloy", is_active=active
    )


def make_call(org: Organization, agent: Agent | None = None, minutes_ago: int = 5) -> Call:
    return Call.objects.create(
        org=org,
        agent=agent,
        caller_number="+447700900123",
        started_at=timezone.now() - timedelta(minutes=minutes_ago),
        duration_seconds=42,
        summary="Booked a check-up",
    )


def make_event(
    org: Organization, event_name: str = "started", step_index: int = 0, **fields
) -> OnboardingEvent:
    """An onboarding telemetry event, stored as the wizard's endpoint stores it."""
    return OnboardingEvent.objects.create(
        org=org, user_id=org.owner_id, event_name=event_name, step_index=step_index, **fields
    )


def make_support_user(*, superuser: bool = False, permissions: tuple[str, ...] = ()) -> User:
    """Support staff (no organization) with the given "app_label.codename" permissions."""
    user = User.objects.create_user(
        unique_email("support"), PASSWORD, is_staff=True, is_superuser=superuser
    )
    for dotted in permissions:
        app_label, codename = dotted.split(".")
        user.user_permissions.add(
            Permission.objects.get(content_type__app_label=app_label, codename=codename)
        )
    return user


def fund(org: Organization, pence: int, key: str | None = None) -> LedgerEntry:
    """A top-up of the org's wallet, as the wallet_credit command writes it."""
    return billing_services.credit(
        org=org,
        amount_pence=pence,
        type=EntryType.TOPUP,
        idempotency_key=key or f"fund-{next(_counter)}",
        description="test top-up",
    ).entry


def charge(org: Organization, pence: int = 1000, key: str | None = None) -> LedgerEntry:
    """A phone-number charge on the org's wallet."""
    return billing_services.debit(
        org=org,
        amount_pence=pence,
        type=EntryType.PHONE_PROVISIONING,
        idempotency_key=key or f"charge-{next(_counter)}",
        description="Phone number +447700900001",
    ).entry


def make_event_at(org: Organization, event_name: str, at, step_index: int = 3) -> None:
    """An onboarding event that happened at `at` (events are append-only and created_at is
    auto_now_add, so a past event is written with an INSERT that sets created_at)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO onboarding_onboardingevent "
            "(id, org_id, user_id, event_name, step_index, metadata, session_id, created_at) "
            "VALUES (gen_random_uuid(), %s, %s, %s, %s, '{}', '', %s)",
            [org.pk, org.owner_id, event_name, step_index, at],
        )


def make_abandoned_org(
    hours_ago: float = 2,
    clinic_name: str | None = "Smile Dental",
    email: str | None = None,
    *,
    verified: bool = True,
) -> Organization:
    """A clinic that viewed the payment step `hours_ago` hours ago and left; its owner has
    verified their address unless `verified` is False."""
    org = make_org(clinic_name, email=email)
    if verified:
        User.objects.filter(pk=org.owner_id).update(email_verified_at=timezone.now())
    make_event_at(org, "payment_viewed", timezone.now() - timedelta(hours=hours_ago))
    return org


def make_line(org: Organization, *, vapi_phone_id: str, phone_number: str):
    """The clinic's managed number as provisioning leaves it (its paid attempt included)."""
    from onboarding.models import AttemptState, ManagedPhoneNumber, ProvisioningAttempt, add_months

    fund(org, billing_services.PHONE_NUMBER_PRICE_PENCE)
    hold = charge(org, billing_services.PHONE_NUMBER_PRICE_PENCE)
    now = timezone.now()
    attempt = ProvisioningAttempt.objects.create(
        org=org,
        state=AttemptState.SUCCEEDED,
        idempotency_key=f"line-{next(_counter)}",
        request_fingerprint="test",
        hold=hold,
        lease_expires_at=now,
        finished_at=now,
        phone_number=phone_number,
        vapi_phone_id=vapi_phone_id,
    )
    return ManagedPhoneNumber.objects.create(
        org=org,
        attempt=attempt,
        phone_number=phone_number,
        twilio_number_sid=f"PN{next(_counter):032d}",
        subaccount_sid="AC" + "1" * 32,
        vapi_phone_id=vapi_phone_id,
        rental_started_at=now,
        paid_until=add_months(now, 1),
    )
