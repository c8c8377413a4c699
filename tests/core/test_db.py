"""voxanne/db.py: a row inserted, read and updated as the ORM would, without its compiler."""

from __future__ import annotations

import pytest
from django.db import IntegrityError, transaction
from django.utils import timezone

from billing.models import TopUp, WebhookEvent
from tests.factories import make_org
from voxanne import db

pytestmark = pytest.mark.django_db


def test_insert_writes_what_create_would_and_the_orm_reads_it_back():
    now = timezone.now()
    event = db.insert(
        WebhookEvent(
            provider="stripe",
            event_id="evt_1",
            type="checkout.session.completed",
            payload={"id": "evt_1", "data": {"amounts": [1, 2]}},
            outcome="processed",
            received_at=now,
            processed_at=now,
        )
    )
    assert not event._state.adding
    stored = WebhookEvent.objects.get(pk=event.pk)
    assert stored.payload == {"id": "evt_1", "data": {"amounts": [1, 2]}}
    assert stored.created_at == event.created_at and stored.created_at >= now  # auto_now_add
    assert stored.received_at == now


def test_insert_raises_integrity_error_on_a_unique_violation_as_save_does():
    now = timezone.now()
    fields = dict(provider="vapi", event_id="e", type="t", payload={}, outcome="processed")
    db.insert(WebhookEvent(**fields, received_at=now, processed_at=now))
    with pytest.raises(IntegrityError), transaction.atomic():
        db.insert(WebhookEvent(**fields, received_at=now, processed_at=now))
    assert WebhookEvent.objects.filter(event_id="e").count() == 1


def test_insert_new_is_false_for_an_existing_key_and_the_transaction_goes_on():
    now = timezone.now()
    fields = dict(provider="vapi", event_id="e", type="t", payload={}, outcome="processed")
    with transaction.atomic():
        first = WebhookEvent(**fields, received_at=now, processed_at=now)
        assert db.insert_new(first) is True and not first._state.adding
        again = WebhookEvent(**fields, received_at=now, processed_at=now)
        assert db.insert_new(again) is False and again._state.adding
        # nothing was raised, so the transaction is still usable
        assert WebhookEvent.objects.filter(event_id="e").get().pk == first.pk


def test_get_reads_a_model_by_its_fields_and_update_writes_only_the_named_ones():
    org = make_org()
    topup = TopUp.objects.create(org=org, amount_pence=2500, stripe_session_id="cs_1")
    assert db.get(TopUp, stripe_session_id="cs_missing") is None
    with transaction.atomic():
        found = db.get(TopUp, pk=topup.pk, lock=True)
        assert (found.pk, found.org_id, found.amount_pence) == (topup.pk, org.pk, 2500)
        assert db.get(TopUp, stripe_session_id="cs_1").pk == topup.pk
        found.status, found.amount_pence = "paid", 1  # amount_pence is not named: not written
        before = found.updated_at
        db.update(found, {"status", "updated_at"})
    stored = TopUp.objects.get(pk=topup.pk)
    assert (stored.status, stored.amount_pence) == ("paid", 2500)
    assert stored.updated_at > before  # auto_now
