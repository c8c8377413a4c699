"""Shards: concurrent parts of one pass that split the clinics between the worker's processes."""

from __future__ import annotations

import threading

import pytest
from django.db import connection

from abandonment.models import AbandonmentEmail
from abandonment.services import Shard, candidate_batches, run_abandonment
from billing.models import EntryType, LedgerEntry
from tests.factories import make_abandoned_org
from voxanne.tenancy import system_context


def test_shards_split_the_id_space_into_adjacent_ranges_without_gaps():
    shards = [Shard(i, 3) for i in range(3)]
    assert shards[0].first.int == 0
    assert shards[-1].last.int == 2**128 - 1
    for left, right in zip(shards, shards[1:], strict=False):
        assert right.first.int == left.last.int + 1
    with pytest.raises(ValueError):
        Shard(3, 3)


@pytest.mark.django_db
def test_each_clinic_is_a_candidate_of_exactly_one_shard(mailoutbox):
    from django.utils import timezone

    orgs = {make_abandoned_org(hours_ago=2).pk for _ in range(24)}
    seen = []
    for index in range(2):
        for batch in candidate_batches(now=timezone.now(), batch_size=5, shard=Shard(index, 2)):
            seen += [c.org_id for c in batch]
    assert sorted(seen) == sorted(orgs)


@pytest.mark.django_db(transaction=True)
def test_two_shards_at_once_make_one_pass_each_email_and_credit_once(mailoutbox):
    orgs = [make_abandoned_org(hours_ago=50) for _ in range(16)]
    summaries = []

    def shard(index: int) -> None:
        try:
            with system_context("test shard"):
                summaries.append(run_abandonment(shard=Shard(index, 2)))
        finally:
            connection.close()

    threads = [threading.Thread(target=shard, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    assert sum(s.sent["3"] for s in summaries) == 16
    assert sum(s.credited for s in summaries) == 16
    assert AbandonmentEmail.objects.filter(org__in=orgs).count() == 16
    assert LedgerEntry.objects.filter(org__in=orgs, type=EntryType.BONUS).count() == 16
    assert run_abandonment().sent == {"1": 0, "2": 0, "3": 0}
