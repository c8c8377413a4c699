"""Support staff see a clinic's onboarding in admin: state, events (read-only), filters."""

from __future__ import annotations

import re

import pytest
from django.utils import timezone

from tests.factories import fund, make_event, make_org, make_support_user
from voxanne.models import Organization

pytestmark = pytest.mark.django_db

CHANGELIST = "/admin/voxanne/organization/"


def change_page(org: Organization) -> str:
    return f"/admin/voxanne/organization/{org.pk}/change/"


@pytest.fixture
def support(client):
    client.force_login(make_support_user(superuser=True))
    return client


def test_clinic_page_lists_its_events_newest_first_and_not_other_clinics(support):
    org, other = make_org("Smile Dental"), make_org("Other Clinic")
    make_event(org, "started", 0, session_id="first-session-aaa")
    make_event(org, "clinic_named", 1, session_id="second-session-bbb")
    make_event(org, "payment_viewed", 3, session_id="third-session-ccc", metadata={"plan": "x"})
    make_event(other, "started", 0, session_id="other-clinic-session")
    html = support.get(change_page(org)).content.decode()
    positions = [
        html.index(s) for s in ("third-session-ccc", "second-session-bbb", "first-session-aaa")
    ]
    assert positions == sorted(positions)
    assert "Payment Viewed" in html and "Onboarding events (newest first)" in html
    assert "other-clinic-session" not in html


def test_clinic_page_shows_the_onboarding_state(support):
    completed_at = timezone.now().replace(year=2025, month=3, day=14)
    org = make_org("Smile Dental")
    Organization.objects.filter(pk=org.pk).update(onboarding_completed_at=completed_at)
    html = support.get(change_page(org)).content.decode()
    assert "Onboarding completed at" in html
    assert "14 Mar 2025" in html


def test_events_cannot_be_added_changed_or_deleted_from_the_clinic_page(support):
    org = make_org("Smile Dental")
    make_event(org, "started", 0, session_id="only-session")
    html = support.get(change_page(org)).content.decode()
    assert 'name="onboarding_events-TOTAL_FORMS"' in html
    assert not re.search(
        r'name="onboarding_events-\d+-(DELETE|event_name|step_index|metadata)"', html
    )
    assert "Add another onboarding event" not in html


def test_a_view_only_support_user_sees_the_events_too(client):
    viewer = make_support_user(
        permissions=("voxanne.view_organization", "onboarding.view_onboardingevent")
    )
    client.force_login(viewer)
    org = make_org("Smile Dental")
    make_event(org, "payment_viewed", 3, session_id="viewer-can-see")
    response = client.get(change_page(org))
    assert response.status_code == 200
    assert "viewer-can-see" in response.content.decode()


def test_non_staff_cannot_open_the_clinic_page(client):
    org = make_org("Smile Dental")
    response = client.get(change_page(org))
    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]


def listed(client, query: str) -> set[str]:
    response = client.get(f"{CHANGELIST}?{query}")
    assert response.status_code == 200
    return {org.clinic_name for org in response.context["cl"].result_list}


@pytest.fixture
def clinics():
    """Four clinics at different places in the wizard. Browsing Clinic's browser claims it
    paid (a payment_success event) but its wallet has no top-up; Paid Clinic paid and its
    browser never said so."""
    fresh = make_org("Fresh Clinic")
    browsing = make_org("Browsing Clinic")
    make_event(browsing, "payment_viewed", 3)
    make_event(browsing, "payment_viewed", 3)
    make_event(browsing, "payment_success", 3)
    paid = make_org("Paid Clinic")
    make_event(paid, "payment_viewed", 3)
    fund(paid, 2500)
    done = make_org("Done Clinic")
    make_event(done, "payment_viewed", 3)
    Organization.objects.filter(pk=done.pk).update(onboarding_completed_at=timezone.now())
    return fresh, browsing, paid, done


def test_completed_filter_splits_clinics_by_onboarding_completion(support, clinics):
    assert listed(support, "onboarding_completed=yes") == {"Done Clinic"}
    assert listed(support, "onboarding_completed=no") == {
        "Fresh Clinic",
        "Browsing Clinic",
        "Paid Clinic",
    }
    assert len(listed(support, "")) == 4


def test_payment_filter_lists_clinics_that_viewed_payment_but_did_not_pay(support, clinics):
    assert listed(support, "payment=viewed_not_paid") == {"Browsing Clinic", "Done Clinic"}
    both = "payment=viewed_not_paid&onboarding_completed=no"
    assert listed(support, both) == {"Browsing Clinic"}


def test_changelist_offers_both_onboarding_filters(support, clinics):
    html = support.get(CHANGELIST).content.decode()
    assert "By onboarding completed" in html
    assert "Viewed payment but not paid" in html
