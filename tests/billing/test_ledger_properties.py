"""Random sequences of money calls against a plain in-memory model of the wallet.

After every step the database's balance and ledger equal the model's, and the deferred
balance == sum(ledger) check passes (forced to run now, not at a commit that tests never reach).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

import pytest
from django.db import connection
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from billing import services
from billing.models import EntryType, LedgerEntry, Wallet
from tests.factories import make_org

pytestmark = pytest.mark.django_db

KEYS = st.one_of(st.sampled_from([f"k{i}" for i in range(5)]), st.uuids().map(str))
AMOUNTS = st.integers(min_value=1, max_value=3000)


@dataclass
class Entry:
    type: str
    amount: int
    reverses: int | None  # index into the model's entries


@dataclass
class Model:
    """What the wallet should be: a balance and a list of entries, nothing else."""

    entries: list[Entry] = field(default_factory=list)
    keys: dict[str, int] = field(default_factory=dict)

    @property
    def balance(self) -> int:
        return sum(e.amount for e in self.entries)

    def refundable(self, index: int) -> int:
        original = self.entries[index]
        if original.amount >= 0:
            return 0
        return -original.amount - sum(e.amount for e in self.entries if e.reverses == index)

    def expect(self, kind: str, *, type: str, amount: int | None, target: int | None, key: str):
        """The outcome of a call: ("replay", index), ("new", Entry) or ("error", exception)."""
        if key in self.keys:
            old = self.entries[self.keys[key]]
            signed = None if amount is None else (-amount if kind == "debit" else amount)
            same = (
                old.type == type
                and (signed is None or old.amount == signed)
                and old.reverses == target
            )
            return ("replay", self.keys[key]) if same else ("error", services.IdempotencyKeyReused)
        if kind == "credit":
            return "new", Entry(type, amount, None)
        if kind == "debit":
            if amount > self.balance:
                return "error", services.InsufficientFunds
            return "new", Entry(type, -amount, None)
        left = self.refundable(target)
        if left == 0 or (amount is not None and amount > left):
            return "error", services.RefundRefused
        return "new", Entry(EntryType.REFUND, left if amount is None else amount, target)


class WalletMachine(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.org = make_org(f"Prop {uuid.uuid4().hex[:6]}")
        self.model = Model()
        self.ids: list = []  # database id of each model entry

    def _check(self, kind: str, call, *, type, amount, target, key):
        outcome, detail = self.model.expect(kind, type=type, amount=amount, target=target, key=key)
        if outcome == "error":
            with pytest.raises(detail):
                call()
            return
        entry = call()
        if outcome == "replay":
            assert entry.pk == self.ids[detail]
            return
        assert (entry.type, entry.amount_pence) == (detail.type, detail.amount)
        self.model.keys[key] = len(self.model.entries)
        self.model.entries.append(detail)
        self.ids.append(entry.pk)

    @rule(amount=AMOUNTS, key=KEYS, type=st.sampled_from(services.CREDIT_ENTRY_TYPES))
    def credit(self, amount, key, type):
        self._check(
            "credit",
            lambda: (
                services.credit(
                    org=self.org, amount_pence=amount, type=type, idempotency_key=key
                ).entry
            ),
            type=type,
            amount=amount,
            target=None,
            key=key,
        )

    @rule(amount=AMOUNTS, key=KEYS, type=st.sampled_from(services.DEBIT_ENTRY_TYPES))
    def debit(self, amount, key, type):
        self._check(
            "debit",
            lambda: (
                services.debit(
                    org=self.org, amount_pence=amount, type=type, idempotency_key=key
                ).entry
            ),
            type=type,
            amount=amount,
            target=None,
            key=key,
        )

    @rule(pick=st.integers(min_value=0), amount=st.none() | AMOUNTS, key=KEYS)
    def refund(self, pick, amount, key):
        if not self.ids:
            return
        # Prefer debits (the interesting case), but sometimes try to refund a credit.
        debits = [i for i, e in enumerate(self.model.entries) if e.amount < 0]
        pool = debits if debits and pick % 4 else list(range(len(self.ids)))
        target = pool[pick % len(pool)]
        original = LedgerEntry.objects.get(pk=self.ids[target])
        self._check(
            "refund",
            lambda: (
                services.refund(
                    entry=original, amount_pence=amount, reason="test", idempotency_key=key
                ).entry
            ),
            type=EntryType.REFUND,
            amount=amount,
            target=target,
            key=key,
        )

    @rule(pick=st.integers(min_value=0))
    def replay_an_earlier_call(self, pick):
        """The same request with the same key returns the first entry and writes nothing."""
        if not self.ids:
            return
        index = pick % len(self.ids)
        original = LedgerEntry.objects.get(pk=self.ids[index])
        if original.type == EntryType.REFUND:
            again = services.refund(
                entry=original.reverses,
                amount_pence=original.amount_pence,
                reason="retry",
                idempotency_key=original.idempotency_key,
            ).entry
        elif original.amount_pence > 0:
            again = services.credit(
                org=self.org,
                amount_pence=original.amount_pence,
                type=original.type,
                idempotency_key=original.idempotency_key,
            ).entry
        else:
            again = services.debit(
                org=self.org,
                amount_pence=-original.amount_pence,
                type=original.type,
                idempotency_key=original.idempotency_key,
            ).entry
        assert again.pk == original.pk

    @invariant()
    def database_matches_the_model(self):
        with connection.cursor() as cursor:
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")  # run the deferred checks now
            cursor.execute("SET CONSTRAINTS ALL DEFERRED")
        wallet = Wallet.objects.get(org=self.org)
        assert wallet.balance_pence == self.model.balance >= 0
        rows = list(LedgerEntry.objects.for_org(self.org).order_by("sequence"))
        assert [r.pk for r in rows] == self.ids
        position = {pk: i for i, pk in enumerate(self.ids)}
        running = 0
        for row, expected in zip(rows, self.model.entries, strict=True):
            running += expected.amount
            assert (row.type, row.amount_pence, row.balance_after_pence) == (
                expected.type,
                expected.amount,
                running,
            )
            assert (position[row.reverses_id] if row.reverses_id else None) == expected.reverses
        for index, expected in enumerate(self.model.entries):
            if expected.amount < 0:
                assert services.refundable_remainder(rows[index]) == self.model.refundable(index)


def test_wallet_matches_an_in_memory_model_after_every_step():
    run_state_machine_as_test(
        WalletMachine,
        settings=settings(max_examples=30, stateful_step_count=20, deadline=None),
    )
