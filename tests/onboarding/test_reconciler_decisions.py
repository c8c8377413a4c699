"""The reconciler's states-by-facts table (onboarding/reconciler.py), row by row."""

from __future__ import annotations

import itertools

import pytest

from onboarding.models import AttemptState
from onboarding.reconciler import Next, next_step

ANY = (False, True)
IN_PROGRESS, COMPENSATING = AttemptState.IN_PROGRESS, AttemptState.COMPENSATING
SUCCEEDED, FAILED = AttemptState.SUCCEEDED, AttemptState.FAILED

# state, lease lapsed, number bought, imported -> next (the module docstring's table)
TABLE = [
    (SUCCEEDED, ANY, ANY, ANY, Next.NOTHING),
    (FAILED, ANY, ANY, ANY, Next.NOTHING),
    (IN_PROGRESS, False, ANY, ANY, Next.WAIT),
    (COMPENSATING, False, ANY, ANY, Next.WAIT),
    (IN_PROGRESS, True, True, True, Next.FINISH),
    (IN_PROGRESS, True, True, False, Next.UNDO),
    (IN_PROGRESS, True, False, ANY, Next.UNDO),
    (COMPENSATING, True, ANY, ANY, Next.UNDO),
]


def expanded(row):
    state, *facts, expected = row
    choices = [fact if isinstance(fact, tuple) else (fact,) for fact in facts]
    return [(state, *combo, expected) for combo in itertools.product(*choices)]


CASES = [case for row in TABLE for case in expanded(row)]


@pytest.mark.parametrize("state,lease_lapsed,number_bought,imported,expected", CASES)
def test_the_reconciler_decides_by_the_table(
    state, lease_lapsed, number_bought, imported, expected
):
    decision = next_step(
        state=state, lease_lapsed=lease_lapsed, number_bought=number_bought, imported=imported
    )
    assert decision is expected


def test_the_table_names_every_combination_of_facts_exactly_once():
    facts = [case[:-1] for case in CASES]
    assert len(facts) == len(set(facts)) == len(AttemptState.values) * 2 * 2 * 2
