"""Reconciliation: does every wallet still agree with its ledger?

The database already refuses a commit that breaks these rules; this is the independent check
that the rules (triggers, constraints) are in place and held, fit for a daily job.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from django.db import connection

# One statement per batch: its snapshot is consistent, so a debit committing meanwhile
# cannot make a wallet look out of step with its ledger.
_BATCH_SQL = """
SELECT w.id, w.org_id, w.balance_pence, w.last_sequence,
       COALESCE(s.total, 0), COALESCE(s.entries, 0), COALESCE(s.newest, 0), s.newest_balance
FROM billing_wallet w
LEFT JOIN LATERAL (
    SELECT SUM(e.amount_pence)::bigint AS total, COUNT(*) AS entries, MAX(e.sequence) AS newest,
           (SELECT n.balance_after_pence FROM billing_ledger_entry n
             WHERE n.org_id = w.org_id ORDER BY n.sequence DESC LIMIT 1) AS newest_balance
    FROM billing_ledger_entry e WHERE e.org_id = w.org_id
) s ON true
WHERE w.id > %s
ORDER BY w.id
LIMIT %s
"""


@dataclass(frozen=True)
class Mismatch:
    wallet_id: str
    org_id: str
    balance_pence: int
    ledger_sum_pence: int
    problems: tuple[str, ...]


@dataclass
class ReconciliationReport:
    wallets: int = 0
    total_balance_pence: int = 0
    mismatches: list[Mismatch] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.mismatches


def _problems(balance, last_sequence, total, entries, newest, newest_balance) -> tuple[str, ...]:
    problems = []  # a negative balance is allowed: money already gone is always recorded
    if balance != total:
        problems.append("balance differs from the sum of the ledger")
    if not (last_sequence == entries == newest):
        problems.append("ledger sequence has gaps or does not match the wallet")
    if entries and newest_balance != total:
        problems.append("newest entry's balance_after differs from the sum of the ledger")
    return tuple(problems)


def _batches(batch_size: int) -> Iterator[list[tuple]]:
    after = "00000000-0000-0000-0000-000000000000"
    while True:
        with connection.cursor() as cursor:
            cursor.execute(_BATCH_SQL, [after, batch_size])
            rows = cursor.fetchall()
        if not rows:
            return
        yield rows
        after = rows[-1][0]


def reconcile_wallets(*, batch_size: int = 1000) -> ReconciliationReport:
    """Compare every visible wallet with its ledger, `batch_size` wallets per query.

    Run it in the system context (commands, jobs): row-level security hides other orgs.
    """
    report = ReconciliationReport()
    for rows in _batches(batch_size):
        for wallet_id, org_id, balance, last_sequence, total, entries, newest, newest_bal in rows:
            report.wallets += 1
            report.total_balance_pence += balance
            problems = _problems(balance, last_sequence, total, entries, newest, newest_bal)
            if problems:
                report.mismatches.append(
                    Mismatch(str(wallet_id), str(org_id), balance, total, problems)
                )
    return report
