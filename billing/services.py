"""The only code that moves money. Every change is one ledger entry plus the balance change,
written in one transaction with the wallet row locked (wallet first, always).

Every function is idempotent by its key (unique per org): a retry with the same key and the
same request returns the first entry and writes nothing; the same key with a different request
raises IdempotencyKeyReused. `credit`/`debit`/`refund` return the entry; `post_credit` and
`post_refund` return a Posting that also says whether this call wrote it (admin uses that to
audit a double-submitted form once).
"""

from __future__ import annotations

import functools
import uuid
from dataclasses import dataclass

import psycopg
from django.db import connection, transaction
from django.db.models import Sum
from django.utils import timezone

from billing.models import ALWAYS_RECORDED_TYPES, EntryType, LedgerEntry, Wallet, format_pence
from voxanne.errors import ApiError, Unprocessable
from voxanne.models import Organization, User

PHONE_NUMBER_PRICE_PENCE = 1000
# What credit() and debit() may write; refunds go through refund(), which links the debit.
CREDIT_ENTRY_TYPES = (EntryType.TOPUP, EntryType.BONUS, EntryType.ADJUSTMENT)
DEBIT_ENTRY_TYPES = (EntryType.PHONE_PROVISIONING, EntryType.ADJUSTMENT)


class InsufficientFunds(ApiError):
    status_code = 402
    default_message = "Insufficient balance. Please top up your wallet."
    code = "insufficient_funds"


class WalletOnHold(ApiError):
    status_code = 403
    default_message = (
        "Your account is on hold while a payment dispute is open. Please contact support."
    )
    code = "account_on_hold"


class RefundRefused(ApiError):
    default_message = "This refund cannot be issued."
    code = "refund_refused"


class IdempotencyKeyReused(Unprocessable):
    default_message = "This idempotency key was already used for a different request."
    code = "idempotency_key_reused"


@dataclass(frozen=True)
class Posting:
    """What a money call did: the entry, and whether this call wrote it.

    `created` is False when the call replayed an earlier one with the same key (nothing written).
    """

    entry: LedgerEntry
    created: bool


def _org_id(org: Organization | str) -> str:
    return getattr(org, "pk", org)


def wallet_for(org: Organization | str) -> Wallet:
    """The org's wallet, created empty if it has none (safe under concurrency)."""
    org_id = _org_id(org)
    wallet = Wallet.objects.filter(org_id=org_id).first()
    if wallet is None:
        Wallet.objects.bulk_create([Wallet(org_id=org_id)], ignore_conflicts=True)
        wallet = Wallet.objects.get(org_id=org_id)
    return wallet


def lock_wallet(org: Organization | str) -> Wallet:
    """Lock the org's wallet row for this transaction (FOR NO KEY UPDATE), creating it if needed.

    The wallet is always the first row an operation locks, so money operations never deadlock.
    """
    if not connection.in_atomic_block:
        raise RuntimeError("lock_wallet() must run inside a transaction")
    org_id = _org_id(org)
    locked = Wallet.objects.select_for_update(no_key=True)
    wallet = locked.filter(org_id=org_id).first()
    if wallet is None:
        Wallet.objects.bulk_create([Wallet(org_id=org_id)], ignore_conflicts=True)
        wallet = locked.get(org_id=org_id)
    return wallet


def _replay(existing: LedgerEntry, *, type: str, amount_pence: int | None, reverses_id) -> Posting:
    same = (
        existing.type == type
        and (amount_pence is None or existing.amount_pence == amount_pence)
        and existing.reverses_id == reverses_id
    )
    if not same:
        raise IdempotencyKeyReused()
    return Posting(existing, created=False)


# The write path is two statements under the wallet lock, in SQL rather than the ORM: it is
# the hottest code in the product (bench/ledger.py), and the invariants live in the database
# either way. 1: lock the wallet. 2: unless an entry already holds the idempotency key, move
# the balance and append the entry; this statement starts after the lock is held, so its
# snapshot sees every committed entry of the org (entries are only appended under the lock).
_LOCK_SQL = (
    "SELECT id, balance_pence, last_sequence, low_balance_pence,"
    " low_balance_alerted_at IS NOT NULL, auto_recharge_below_pence"
    " FROM billing_wallet WHERE org_id = %s"
    " FOR NO KEY UPDATE"
)
_APPEND_SQL = """
WITH existing AS (
    SELECT id FROM billing_ledger_entry WHERE org_id = %(org_id)s AND idempotency_key = %(key)s
), moved AS (
    UPDATE billing_wallet
    SET balance_pence = %(balance)s, last_sequence = %(sequence)s, updated_at = %(now)s
    WHERE id = %(wallet_id)s AND NOT EXISTS (SELECT FROM existing)
), appended AS (
    INSERT INTO billing_ledger_entry (id, org_id, wallet_id, sequence, type, amount_pence,
        balance_after_pence, description, reverses_id, idempotency_key, created_by_id, created_at)
    SELECT %(id)s::uuid, %(org_id)s::uuid, %(wallet_id)s::uuid, %(sequence)s::bigint,
        %(type)s::varchar, %(amount)s::bigint, %(balance)s::bigint, %(description)s::varchar,
        %(reverses_id)s::uuid, %(key)s::varchar, %(created_by_id)s::uuid, %(now)s::timestamptz
    WHERE NOT EXISTS (SELECT FROM existing)
    RETURNING id
)
SELECT (SELECT id FROM existing), (SELECT id FROM appended)
"""


def _execute(sql: str, params) -> tuple | None:
    """Run one of the statements above, prepared on the server, in Django's transaction.

    Django's cursors bind parameters on the client, so the server parses and plans every
    statement afresh; these two run on every money call, so they are prepared once per
    connection instead. Returns the first row, if any. Errors surface as django.db exceptions.
    """
    connection.ensure_connection()
    with connection.wrap_database_errors, psycopg.Cursor(connection.connection) as cursor:

        def execute(sql, params, many, context):
            cursor.execute(sql, params, prepare=True)

        for wrapper in reversed(connection.execute_wrappers):  # as Django's cursors do
            execute = functools.partial(wrapper, execute)
        execute(sql, params, False, {"connection": connection, "cursor": cursor})
        return cursor.fetchone() if cursor.description else None


@dataclass
class _Locked:
    """A wallet row locked for this transaction."""

    wallet_id: uuid.UUID
    org_id: str
    balance_pence: int
    last_sequence: int
    low_balance_pence: int = 0
    low_balance_alerted: bool = False
    auto_recharge_below_pence: int | None = None


def _lock_for_posting(org_id) -> _Locked:
    """Lock the org's wallet for this transaction, creating it if needed (wallet first, always)."""
    row = _execute(_LOCK_SQL, [org_id])
    if row is None:
        Wallet.objects.bulk_create([Wallet(org_id=org_id)], ignore_conflicts=True)
        row = _execute(_LOCK_SQL, [org_id])
    return _Locked(row[0], org_id, row[1], row[2], row[3], row[4], row[5])


def _post(
    *,
    locked: _Locked,
    amount_pence: int,
    type: str,
    idempotency_key: str,
    description: str,
    reverses_id=None,
    created_by: User | None = None,
) -> Posting:
    """Append one entry to a locked wallet, or replay the entry that already holds the key.

    Raises InsufficientFunds when spending would end below zero (money already gone,
    ALWAYS_RECORDED_TYPES, and credits are written whatever the balance), IdempotencyKeyReused
    for the key of another request. The database holds the same rule.
    """
    _check_key(idempotency_key)
    new_balance = locked.balance_pence + amount_pence
    if new_balance < 0 and amount_pence < 0 and type not in ALWAYS_RECORDED_TYPES:
        existing = _existing(locked.org_id, idempotency_key)  # a retry is not refused
        if existing:
            return _replay(existing, type=type, amount_pence=amount_pence, reverses_id=reverses_id)
        raise InsufficientFunds()
    sequence = locked.last_sequence + 1
    entry = LedgerEntry(
        id=uuid.uuid4(),
        org_id=locked.org_id,
        wallet_id=locked.wallet_id,
        sequence=sequence,
        type=type,
        amount_pence=amount_pence,
        balance_after_pence=new_balance,
        description=description[:500],
        reverses_id=reverses_id,
        idempotency_key=idempotency_key,
        created_by_id=created_by.pk if created_by else None,
        created_at=timezone.now(),
    )
    existing_id, appended_id = _execute(
        _APPEND_SQL,
        {
            "org_id": entry.org_id,
            "key": idempotency_key,
            "balance": new_balance,
            "sequence": sequence,
            "now": entry.created_at,
            "wallet_id": entry.wallet_id,
            "id": entry.id,
            "type": entry.type,
            "amount": amount_pence,
            "description": entry.description,
            "reverses_id": reverses_id,
            "created_by_id": entry.created_by_id,
        },
    )
    if existing_id is not None:
        existing = LedgerEntry.objects.get(pk=existing_id)
        return _replay(existing, type=type, amount_pence=amount_pence, reverses_id=reverses_id)
    if appended_id != entry.id:
        raise RuntimeError("the ledger entry was not appended")  # cannot happen: wallet locked
    entry._state.adding = False
    entry._state.db = connection.alias
    locked.balance_pence, locked.last_sequence = new_balance, sequence
    _watch_balance(locked, amount_pence)
    return Posting(entry, created=True)


def _watch_balance(locked: _Locked, amount_pence: int) -> None:
    """After a posting (under the wallet lock): re-arm the low-balance email when the balance
    is back at or above its line, and when a debit leaves it low, ask billing/alerts.py to
    look once the transaction commits (the low-balance email, an auto-recharge)."""
    if amount_pence > 0:
        if locked.low_balance_alerted and locked.balance_pence >= locked.low_balance_pence:
            Wallet.objects.filter(pk=locked.wallet_id).update(low_balance_alerted_at=None)
            locked.low_balance_alerted = False
        return
    recharge_below = locked.auto_recharge_below_pence
    alert_due = not locked.low_balance_alerted and locked.balance_pence < locked.low_balance_pence
    if alert_due or (recharge_below is not None and locked.balance_pence < recharge_below):
        transaction.on_commit(functools.partial(_after_low_debit, locked.org_id), robust=True)


def _after_low_debit(org_id) -> None:
    from billing import alerts

    alerts.balance_dropped(org_id)


def claim_low_balance_alert(*, org: Organization | str) -> Wallet | None:
    """Take the right to send the low-balance email for the current crossing: the wallet when
    its balance is below its line and nobody has claimed this crossing yet, else None."""
    with transaction.atomic(durable=True):
        wallet = lock_wallet(org)
        if wallet.low_balance_alerted_at is not None or not wallet.is_low_balance:
            return None
        wallet.low_balance_alerted_at = timezone.now()
        wallet.save(update_fields=["low_balance_alerted_at", "updated_at"])
        return wallet


def release_low_balance_alert(*, org: Organization | str) -> None:
    """Give a claimed low-balance email back (its send failed): the next check sends it."""
    Wallet.objects.filter(org_id=_org_id(org)).update(low_balance_alerted_at=None)


def set_auto_recharge_trigger(*, org: Organization | str, below_pence: int | None) -> Wallet:
    """The balance below which a debit asks billing/recharge.py for a recharge (None: never).
    Joins the caller's transaction (recharge.py changes its settings in the same one)."""
    if not connection.in_atomic_block:
        raise RuntimeError("set_auto_recharge_trigger() joins the caller's transaction")
    wallet = lock_wallet(org)
    if wallet.auto_recharge_below_pence != below_pence:
        wallet.auto_recharge_below_pence = below_pence
        wallet.save(update_fields=["auto_recharge_below_pence", "updated_at"])
    return wallet


def set_low_balance_line(*, org: Organization | str, low_balance_pence: int) -> Wallet:
    """Change the balance below which the clinic is emailed; re-armed when above it."""
    if isinstance(low_balance_pence, bool) or not isinstance(low_balance_pence, int):
        raise ValueError("low_balance_pence must be an integer")
    if low_balance_pence < 0:
        raise ValueError("low_balance_pence must not be negative")
    with transaction.atomic(durable=True):
        wallet = lock_wallet(org)
        wallet.low_balance_pence = low_balance_pence
        fields = ["low_balance_pence", "updated_at"]
        if not wallet.is_low_balance and wallet.low_balance_alerted_at is not None:
            wallet.low_balance_alerted_at = None
            fields.append("low_balance_alerted_at")
        wallet.save(update_fields=fields)
        return wallet


def _check_key(idempotency_key: str) -> None:
    if not idempotency_key or len(idempotency_key) > 255:
        raise ValueError("idempotency_key must be 1..255 characters")


def _existing(org_id, idempotency_key: str) -> LedgerEntry | None:
    _check_key(idempotency_key)
    return LedgerEntry.objects.filter(org_id=org_id, idempotency_key=idempotency_key).first()


def _require_positive(amount_pence: int) -> None:
    if isinstance(amount_pence, bool) or not isinstance(amount_pence, int) or amount_pence <= 0:
        raise ValueError("amount_pence must be a positive integer")


def _credit_in_transaction(
    *,
    org,
    amount_pence: int,
    type: str,
    idempotency_key: str,
    description: str,
    created_by: User | None,
) -> Posting:
    _require_positive(amount_pence)
    if type not in CREDIT_ENTRY_TYPES:
        raise ValueError(f"credit() cannot write {type!r} entries")
    _check_key(idempotency_key)
    return _post(
        locked=_lock_for_posting(_org_id(org)),
        amount_pence=amount_pence,
        type=type,
        idempotency_key=idempotency_key,
        description=description,
        created_by=created_by,
    )


def post_credit(
    *,
    org: Organization | str,
    amount_pence: int,
    type: str,
    idempotency_key: str,
    description: str = "",
    created_by: User | None = None,
) -> Posting:
    """Add money (top-up, bonus, adjustment) in its own transaction; says if it was a replay."""
    with transaction.atomic(durable=True):
        return _credit_in_transaction(
            org=org,
            amount_pence=amount_pence,
            type=type,
            idempotency_key=idempotency_key,
            description=description,
            created_by=created_by,
        )


def credit(
    *,
    org: Organization | str,
    amount_pence: int,
    type: str,
    idempotency_key: str,
    description: str = "",
    created_by: User | None = None,
) -> LedgerEntry:
    """Add money (top-up, bonus, adjustment). Its own transaction."""
    return post_credit(
        org=org,
        amount_pence=amount_pence,
        type=type,
        idempotency_key=idempotency_key,
        description=description,
        created_by=created_by,
    ).entry


@dataclass(frozen=True)
class CreditOrder:
    """One credit of a batch for `post_credits`."""

    org_id: uuid.UUID | str
    amount_pence: int
    type: str
    idempotency_key: str
    description: str = ""


def post_credits(*, orders: list[CreditOrder]) -> list[Posting]:
    """Several credits in one transaction: all are written (or replayed), or none is.

    For jobs that credit many wallets (abandonment bonuses): one commit instead of one per
    credit. Wallets are locked in org order, so two batches never deadlock each other. Each
    order is idempotent by its key exactly as `credit` is; IdempotencyKeyReused or a database
    error on any order rolls the whole batch back. Returns the postings in `orders`' order.
    """
    ordered = sorted(range(len(orders)), key=lambda i: str(orders[i].org_id))
    postings: list[Posting | None] = [None] * len(orders)
    with transaction.atomic(durable=True):
        for i in ordered:
            order = orders[i]
            postings[i] = _credit_in_transaction(
                org=order.org_id,
                amount_pence=order.amount_pence,
                type=order.type,
                idempotency_key=order.idempotency_key,
                description=order.description,
                created_by=None,
            )
    return postings


def debit(
    *,
    org: Organization | str,
    amount_pence: int,
    type: str,
    idempotency_key: str,
    description: str = "",
    created_by: User | None = None,
) -> LedgerEntry:
    """Take money. Raises InsufficientFunds (nothing written) if the balance is short."""
    with transaction.atomic(durable=True):
        return _debit_in_transaction(
            org=org,
            amount_pence=amount_pence,
            type=type,
            idempotency_key=idempotency_key,
            description=description,
            created_by=created_by,
        ).entry


def _debit_in_transaction(
    *,
    org,
    amount_pence: int,
    type: str,
    idempotency_key: str,
    description: str,
    created_by: User | None,
) -> Posting:
    _require_positive(amount_pence)
    if type not in DEBIT_ENTRY_TYPES:
        raise ValueError(f"debit() cannot write {type!r} entries")
    _check_key(idempotency_key)
    return _post(
        locked=_lock_for_posting(_org_id(org)),
        amount_pence=-amount_pence,
        type=type,
        idempotency_key=idempotency_key,
        description=description,
        created_by=created_by,
    )


def refundable_remainder(entry: LedgerEntry) -> int:
    """Pence of a debit not yet refunded (0 for credits)."""
    if entry.amount_pence >= 0:
        return 0
    refunded = entry.reversals.aggregate(total=Sum("amount_pence"))["total"] or 0
    return -entry.amount_pence - refunded


def _refund_in_transaction(
    *,
    entry: LedgerEntry,
    amount_pence: int | None,
    reason: str,
    idempotency_key: str,
    created_by: User | None,
) -> Posting:
    if amount_pence is not None:
        _require_positive(amount_pence)
    locked = _lock_for_posting(entry.org_id)
    existing = _existing(entry.org_id, idempotency_key)  # checked first: a retry is not refused
    if existing:
        return _replay(
            existing, type=EntryType.REFUND, amount_pence=amount_pence, reverses_id=entry.pk
        )
    if entry.amount_pence >= 0:
        raise RefundRefused("Only a charge can be refunded.")
    remainder = refundable_remainder(entry)
    if remainder == 0:
        raise RefundRefused("This charge has already been refunded in full.")
    amount = remainder if amount_pence is None else amount_pence
    if amount > remainder:
        raise RefundRefused(
            f"A refund can be at most {format_pence(remainder)}, what is left of this charge."
        )
    return _post(
        locked=locked,
        amount_pence=amount,
        type=EntryType.REFUND,
        idempotency_key=idempotency_key,
        description=reason,
        reverses_id=entry.pk,
        created_by=created_by,
    )


def post_refund(
    *,
    entry: LedgerEntry,
    reason: str,
    idempotency_key: str,
    amount_pence: int | None = None,
    created_by: User | None = None,
) -> Posting:
    """Give back part or all (the default) of a debit; says if it was a replay.

    Raises RefundRefused without a reason, for a credit, or beyond what is left of the debit.
    """
    if not reason or not reason.strip():
        raise RefundRefused("A refund needs a reason.")
    with transaction.atomic(durable=True):
        return _refund_in_transaction(
            entry=entry,
            amount_pence=amount_pence,
            reason=reason.strip(),
            idempotency_key=idempotency_key,
            created_by=created_by,
        )


def refund(
    *,
    entry: LedgerEntry,
    reason: str,
    idempotency_key: str,
    amount_pence: int | None = None,
    created_by: User | None = None,
) -> LedgerEntry:
    """Give back part or all (the default) of a debit. Raises RefundRefused beyond what is left."""
    return post_refund(
        entry=entry,
        reason=reason,
        idempotency_key=idempotency_key,
        amount_pence=amount_pence,
        created_by=created_by,
    ).entry


# --- Hold then settle: phone-number provisioning ------------------------------------------


def hold_for_provisioning(
    *, org: Organization | str, idempotency_key: str, description: str
) -> LedgerEntry:
    """Take the phone-number price now, inside the caller's transaction.

    The hold is a `phone_provisioning` debit. Settling it means doing nothing (the charge
    stays); undoing it is `release_hold`, whose key is derived from the hold, so it can
    happen at most once. Raises WalletOnHold while the wallet is frozen, InsufficientFunds.
    """
    if not connection.in_atomic_block:
        raise RuntimeError("hold_for_provisioning() joins the caller's transaction")
    refuse_spending_on_hold(lock_wallet(org))
    return _debit_in_transaction(
        org=org,
        amount_pence=PHONE_NUMBER_PRICE_PENCE,
        type=EntryType.PHONE_PROVISIONING,
        idempotency_key=idempotency_key,
        description=description,
        created_by=None,
    ).entry


def release_hold(*, hold: LedgerEntry, reason: str) -> LedgerEntry | None:
    """Give back whatever of a hold is not refunded yet; safe to call any number of times.

    Joins the caller's transaction if there is one. Returns the release entry (the first one on
    a retry), or None when support had already refunded the hold in full.
    """
    with transaction.atomic():
        lock_wallet(hold.org_id)
        key = f"release:{hold.pk}"
        existing = _existing(hold.org_id, key)
        if existing:
            return existing
        if refundable_remainder(hold) == 0:
            return None
        return _refund_in_transaction(
            entry=hold, amount_pence=None, reason=reason, idempotency_key=key, created_by=None
        ).entry


def charge_number_rental(
    *, org: Organization | str, amount_pence: int, idempotency_key: str, description: str
) -> Posting:
    """Take a month of a number's rental, inside the caller's transaction (onboarding/rental.py
    advances the number's paid_until in the same one). Idempotent by key: a second run for the
    same period replays the first entry (`created` False). A decision to spend: raises
    WalletOnHold while the wallet is frozen, InsufficientFunds when the balance is short."""
    if not connection.in_atomic_block:
        raise RuntimeError("charge_number_rental() joins the caller's transaction")
    wallet = lock_wallet(org)
    existing = _existing(wallet.org_id, idempotency_key)
    if existing:  # a replay is not refused, whatever the wallet's state now
        return _replay(
            existing, type=EntryType.NUMBER_RENTAL, amount_pence=-amount_pence, reverses_id=None
        )
    refuse_spending_on_hold(wallet)
    _require_positive(amount_pence)
    return _post(
        locked=_lock_for_posting(wallet.org_id),
        amount_pence=-amount_pence,
        type=EntryType.NUMBER_RENTAL,
        idempotency_key=idempotency_key,
        description=description,
    )


# --- Money from and back to Stripe (billing/topups.py calls these) ------------------------


def refuse_spending_on_hold(wallet: Wallet) -> None:
    """Raise WalletOnHold if the (locked) wallet is frozen: a decision to spend is refused."""
    if wallet.frozen_at is not None:
        raise WalletOnHold()


def record_topup(
    *, org: Organization | str, amount_pence: int, idempotency_key: str, description: str
) -> Posting:
    """Credit money Stripe took for a top-up, inside the caller's transaction (the webhook's
    inbox row and this entry commit together). Idempotent by key, as `credit` is."""
    if not connection.in_atomic_block:
        raise RuntimeError("record_topup() joins the caller's transaction")
    return _credit_in_transaction(
        org=org,
        amount_pence=amount_pence,
        type=EntryType.TOPUP,
        idempotency_key=idempotency_key,
        description=description,
        created_by=None,
    )


def record_money_gone(
    *, org: Organization | str, amount_pence: int, type: str, idempotency_key: str, description: str
) -> Posting:
    """Debit money that has already left at the provider (a refund to the card, a chargeback),
    inside the caller's transaction. Always written, even when the balance goes below zero."""
    if not connection.in_atomic_block:
        raise RuntimeError("record_money_gone() joins the caller's transaction")
    if type not in ALWAYS_RECORDED_TYPES:
        raise ValueError(f"record_money_gone() cannot write {type!r} entries")
    _require_positive(amount_pence)
    return _post(
        locked=_lock_for_posting(_org_id(org)),
        amount_pence=-amount_pence,
        type=type,
        idempotency_key=idempotency_key,
        description=description,
    )


def freeze_wallet(*, org: Organization | str, reason: str) -> Wallet:
    """Refuse spending from the org's wallet until `unfreeze_wallet`; joins the caller's
    transaction. Freezing a frozen wallet keeps its first reason."""
    if not connection.in_atomic_block:
        raise RuntimeError("freeze_wallet() joins the caller's transaction")
    wallet = lock_wallet(org)
    if wallet.frozen_at is None:
        wallet.frozen_at = timezone.now()
        wallet.frozen_reason = reason[:500]
        wallet.save(update_fields=["frozen_at", "frozen_reason", "updated_at"])
    return wallet


def unfreeze_wallet(*, org: Organization | str) -> Wallet:
    """Allow spending again; joins the caller's transaction."""
    if not connection.in_atomic_block:
        raise RuntimeError("unfreeze_wallet() joins the caller's transaction")
    wallet = lock_wallet(org)
    if wallet.frozen_at is not None:
        wallet.frozen_at = None
        wallet.frozen_reason = ""
        wallet.save(update_fields=["frozen_at", "frozen_reason", "updated_at"])
    return wallet
