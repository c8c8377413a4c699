"""The only code that moves money. Every change is one ledger entry plus the balance change,
written in one transaction with the wallet row locked (wallet first, always).

One function per operation: `credit`, `credit_many`, `debit`, `refund`, and the
`hold_for_provisioning` / `release_hold` pair. Each returns a Posting: the entry, and whether
this call wrote it. Every operation is idempotent by its key (unique per org): a retry with the
same key and the same request returns the first entry and writes nothing; the same key with a
different request raises IdempotencyKeyReused.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from django.db import connection, transaction
from django.db.models import Sum
from django.utils import timezone

from billing.models import (
    ALWAYS_RECORDED_TYPES,
    BACK_TO_CARD_TYPES,
    EntryType,
    LedgerEntry,
    Wallet,
    format_pence,
)
from voxanne import db
from voxanne.errors import ApiError, IdempotencyKeyReused
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
    return Wallet.objects.get_or_create(org_id=_org_id(org))[0]


# The wallet's two hot statements are SQL, in this one place, run on Django's cursor and read
# into models with Model.from_db (the columns are the models' own, in their order). Measured
# (bench/ledger.py, same runs' raw psycopg baseline, hot wallet / 1,000 wallets): the ORM's
# lock, key look-up, UPDATE and INSERT gave 0.43x / 0.21x even with server-side binding; the
# same two statements read through RawQuerySet gave 0.54x / 0.42x, its column mapping costing
# more Python than the statements; read as below, 0.70x / 0.58x (2026-12-01). Like every
# statement, they are prepared on a connection's fifth run (DATABASES in voxanne/settings.py).
# 1: lock the wallet. 2: unless an entry already holds the key, move the balance and append the
# entry. Statement 2 starts after the lock is held, so its snapshot sees every committed entry
# of the org (entries are only appended under the lock): a retry is always replayed.
_WALLET_FIELDS = [f.attname for f in Wallet._meta.concrete_fields]
_ENTRY_FIELDS = [f.attname for f in LedgerEntry._meta.concrete_fields]
_WALLET_COLUMNS = ", ".join(f.column for f in Wallet._meta.concrete_fields)
_ENTRY_COLUMNS = ", ".join(f.column for f in LedgerEntry._meta.concrete_fields)
_LOCK_SQL = f"SELECT {_WALLET_COLUMNS} FROM billing_wallet WHERE org_id = %s FOR NO KEY UPDATE"
_APPEND_SQL = f"""
WITH existing AS (
    SELECT {_ENTRY_COLUMNS} FROM billing_ledger_entry
    WHERE org_id = %(org_id)s AND idempotency_key = %(key)s
), moved AS (
    UPDATE billing_wallet
    SET balance_pence = %(balance)s, last_sequence = %(sequence)s, updated_at = %(now)s
    WHERE id = %(wallet_id)s AND NOT EXISTS (SELECT FROM existing)
), appended AS (
    INSERT INTO billing_ledger_entry (id, org_id, wallet_id, sequence, type, amount_pence,
        balance_after_pence, description, reverses_id, idempotency_key, created_by_id, created_at,
        internal_note)
    SELECT %(id)s, %(org_id)s, %(wallet_id)s, %(sequence)s, %(type)s, %(amount)s, %(balance)s,
        %(description)s, %(reverses_id)s::uuid, %(key)s, %(created_by_id)s::uuid, %(now)s,
        %(internal_note)s
    WHERE NOT EXISTS (SELECT FROM existing)
    RETURNING {_ENTRY_COLUMNS}
)
SELECT {_ENTRY_COLUMNS}, false FROM existing UNION ALL SELECT {_ENTRY_COLUMNS}, true FROM appended
"""


def _locked_wallet(org_id) -> Wallet | None:
    row = db.fetch_row(_LOCK_SQL, [org_id])
    return None if row is None else Wallet.from_db(connection.alias, _WALLET_FIELDS, row)


def lock_wallet(org: Organization | str) -> Wallet:
    """Lock the org's wallet row for this transaction (FOR NO KEY UPDATE), creating it if needed.

    The wallet is always the first row an operation locks, so money operations never deadlock;
    NO KEY leaves ledger rows that reference the wallet free to be inserted by others.
    """
    if not connection.in_atomic_block:
        raise RuntimeError("lock_wallet() must run inside a transaction")
    org_id = _org_id(org)
    wallet = _locked_wallet(org_id)
    if wallet is None:
        wallet_for(org_id)
        wallet = _locked_wallet(org_id)
    return wallet


def _post(
    wallet: Wallet,
    *,
    amount_pence: int,
    type: str,
    idempotency_key: str,
    description: str,
    reverses: LedgerEntry | None = None,
    created_by: User | None = None,
    internal_note: str = "",
) -> Posting:
    """Append one entry to a wallet locked by `lock_wallet`, or replay the entry with the key.

    Raises InsufficientFunds when spending would end below zero (money already gone,
    ALWAYS_RECORDED_TYPES, and credits are written whatever the balance), IdempotencyKeyReused
    for the key of another request. The database holds the same rule.
    """
    _check_key(idempotency_key)
    reverses_id = reverses.pk if reverses else None
    balance = wallet.balance_pence + amount_pence
    if balance < 0 and amount_pence < 0 and type not in ALWAYS_RECORDED_TYPES:
        entry = _existing(wallet.org_id, idempotency_key)  # a retry is replayed, not refused
        if entry is None:
            raise InsufficientFunds()
    else:
        params = {
            "org_id": wallet.org_id,
            "key": idempotency_key,
            "wallet_id": wallet.pk,
            "balance": balance,
            "sequence": wallet.last_sequence + 1,
            "now": timezone.now(),
            "id": uuid.uuid4(),
            "type": type,
            "amount": amount_pence,
            "description": description[:500],
            "reverses_id": reverses_id,
            "created_by_id": created_by.pk if created_by else None,
            "internal_note": internal_note[:500],
        }
        *columns, created = db.fetch_row(_APPEND_SQL, params)
        entry = LedgerEntry.from_db(connection.alias, _ENTRY_FIELDS, columns)
        if created:
            wallet.balance_pence, wallet.last_sequence = balance, entry.sequence
            _watch_balance(wallet, amount_pence)
            return Posting(entry, created=True)
    if (entry.type, entry.amount_pence, entry.reverses_id) != (type, amount_pence, reverses_id):
        raise IdempotencyKeyReused()
    return Posting(entry, created=False)


def _watch_balance(wallet: Wallet, amount_pence: int) -> None:
    """After a posting (under the wallet lock): re-arm the low-balance email when the balance
    is back at or above its line, and when a debit leaves it low, ask billing/alerts.py to
    look once the transaction commits (the low-balance email, an auto-recharge)."""
    alerted = wallet.low_balance_alerted_at is not None
    if amount_pence > 0:
        if alerted and wallet.balance_pence >= wallet.low_balance_pence:
            Wallet.objects.filter(pk=wallet.pk).update(low_balance_alerted_at=None)
            wallet.low_balance_alerted_at = None
        return
    recharge_below = wallet.auto_recharge_below_pence
    alert_due = not alerted and wallet.balance_pence < wallet.low_balance_pence
    if alert_due or (recharge_below is not None and wallet.balance_pence < recharge_below):
        org_id = wallet.org_id
        # A lambda, not functools.partial: a robust on_commit logs its callable's __qualname__.
        transaction.on_commit(lambda: _after_low_debit(org_id), robust=True)


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


def _check_credit(amount_pence: int, type: str) -> None:
    _require_positive(amount_pence)
    if type not in CREDIT_ENTRY_TYPES:
        raise ValueError(f"credit() cannot write {type!r} entries")


def credit(
    *,
    org: Organization | str,
    amount_pence: int,
    type: str,
    idempotency_key: str,
    description: str = "",
    created_by: User | None = None,
    internal_note: str = "",
) -> Posting:
    """Add money (top-up, bonus, adjustment) in its own transaction.

    `description` is what the clinic reads; `internal_note` is for staff only.
    """
    _check_credit(amount_pence, type)
    with transaction.atomic(durable=True):
        return _post(
            lock_wallet(org),
            amount_pence=amount_pence,
            type=type,
            idempotency_key=idempotency_key,
            description=description,
            created_by=created_by,
            internal_note=internal_note,
        )


@dataclass(frozen=True)
class CreditOrder:
    """One credit of a batch for `credit_many`."""

    org_id: uuid.UUID | str
    amount_pence: int
    type: str
    idempotency_key: str
    description: str = ""


def credit_many(*, orders: list[CreditOrder]) -> list[Posting]:
    """Several credits in one transaction: all are written (or replayed), or none is.

    For jobs that credit many wallets (abandonment bonuses): one commit instead of one per
    credit. Wallets are locked in org order, so two batches never deadlock each other. Each
    order is idempotent by its key exactly as `credit` is; IdempotencyKeyReused or a database
    error on any order rolls the whole batch back. Returns the postings in `orders`' order.
    """
    for order in orders:
        _check_credit(order.amount_pence, order.type)
    postings: dict[int, Posting] = {}
    with transaction.atomic(durable=True):
        for i in sorted(range(len(orders)), key=lambda i: str(orders[i].org_id)):
            order = orders[i]
            postings[i] = _post(
                lock_wallet(order.org_id),
                amount_pence=order.amount_pence,
                type=order.type,
                idempotency_key=order.idempotency_key,
                description=order.description,
            )
    return [postings[i] for i in range(len(orders))]


def debit(
    *,
    org: Organization | str,
    amount_pence: int,
    type: str,
    idempotency_key: str,
    description: str = "",
    created_by: User | None = None,
) -> Posting:
    """Take money in its own transaction. Raises InsufficientFunds (nothing written) if short."""
    _require_positive(amount_pence)
    if type not in DEBIT_ENTRY_TYPES:
        raise ValueError(f"debit() cannot write {type!r} entries")
    with transaction.atomic(durable=True):
        return _post(
            lock_wallet(org),
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


def _refund(
    wallet: Wallet,
    *,
    entry: LedgerEntry,
    amount_pence: int | None,
    reason: str,
    idempotency_key: str,
    created_by: User | None,
    internal_note: str = "",
) -> Posting:
    """Refund part (or with None, the rest) of a debit on its locked wallet."""
    existing = _existing(entry.org_id, idempotency_key)  # checked first: a retry is not refused
    if existing:
        same = existing.type == EntryType.REFUND and existing.reverses_id == entry.pk
        if not same or (amount_pence is not None and existing.amount_pence != amount_pence):
            raise IdempotencyKeyReused()
        return Posting(existing, created=False)
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
        wallet,
        amount_pence=amount,
        type=EntryType.REFUND,
        idempotency_key=idempotency_key,
        description=reason,
        reverses=entry,
        created_by=created_by,
        internal_note=internal_note,
    )


def refund(
    *,
    entry: LedgerEntry,
    reason: str,
    idempotency_key: str,
    amount_pence: int | None = None,
    created_by: User | None = None,
    internal_note: str = "",
) -> Posting:
    """Give back part or all (the default) of a debit in its own transaction.

    `reason` is what the clinic reads; `internal_note` is for staff only. Raises RefundRefused
    without a reason, for a credit, for money that left to the card (a refund to the card, a
    chargeback: giving it back to the wallet would pay twice), or beyond what is left of the
    debit.
    """
    if not reason or not reason.strip():
        raise RefundRefused("A refund needs a reason.")
    if entry.type in BACK_TO_CARD_TYPES:
        raise RefundRefused(
            "This money went back to the card: it cannot be refunded to the wallet."
        )
    if amount_pence is not None:
        _require_positive(amount_pence)
    with transaction.atomic(durable=True):
        return _refund(
            lock_wallet(entry.org_id),
            entry=entry,
            amount_pence=amount_pence,
            reason=reason.strip(),
            idempotency_key=idempotency_key,
            created_by=created_by,
            internal_note=internal_note,
        )


# --- Hold then settle: phone-number provisioning ------------------------------------------


def hold_for_provisioning(*, wallet: Wallet, idempotency_key: str, description: str) -> Posting:
    """Take the phone-number price now from a wallet the caller locked (`lock_wallet`).

    Joins the caller's transaction. The hold is a `phone_provisioning` debit. Settling it means
    doing nothing (the charge stays); undoing it is `release_hold`, whose key is derived from
    the hold, so it can happen at most once. Raises WalletOnHold while the wallet is frozen,
    InsufficientFunds.
    """
    if not connection.in_atomic_block:
        raise RuntimeError("hold_for_provisioning() joins the caller's transaction")
    refuse_spending_on_hold(wallet)
    return _post(
        wallet,
        amount_pence=-PHONE_NUMBER_PRICE_PENCE,
        type=EntryType.PHONE_PROVISIONING,
        idempotency_key=idempotency_key,
        description=description,
    )


def release_hold(*, hold: LedgerEntry, reason: str) -> Posting | None:
    """Give back whatever of a hold is not refunded yet; safe to call any number of times.

    Locks the wallet first; joins the caller's transaction if there is one. Returns the release
    (the first one on a retry), or None when support had already refunded the hold in full.
    """
    with transaction.atomic():
        wallet = lock_wallet(hold.org_id)
        key = f"release:{hold.pk}"
        existing = _existing(hold.org_id, key)
        if existing:
            return Posting(existing, created=False)
        if refundable_remainder(hold) == 0:
            return None
        return _refund(
            wallet,
            entry=hold,
            amount_pence=None,
            reason=reason,
            idempotency_key=key,
            created_by=None,
        )


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
        if (existing.type, existing.amount_pence) != (EntryType.NUMBER_RENTAL, -amount_pence):
            raise IdempotencyKeyReused()
        return Posting(existing, created=False)
    refuse_spending_on_hold(wallet)
    _require_positive(amount_pence)
    return _post(
        wallet,
        amount_pence=-amount_pence,
        type=EntryType.NUMBER_RENTAL,
        idempotency_key=idempotency_key,
        description=description,
    )


# --- Money from and back to Stripe (billing/topups.py calls these) ------------------------


def reverse_card_refund(*, debit: LedgerEntry, reason: str, created_by: User | None) -> Posting:
    """Undo, in its own transaction, support's refund-to-card debit that Stripe refused (no
    money left): a `refund` entry for all of it, keyed `card-refund-reversal:<debit id>`, so it
    happens at most once."""
    with transaction.atomic(durable=True):
        return _reverse_card_refund(debit, reason=reason, created_by=created_by)


def restore_failed_card_refund(*, debit: LedgerEntry, reason: str) -> Posting | None:
    """Inside the caller's transaction (a webhook's): undo a refund-to-card debit whose refund
    Stripe reports failed afterwards (the money came back to us, not to the card), under the
    key a refused one gets, so a debit is undone at most once. None when nothing of the debit
    stands (support refunded it already)."""
    if not connection.in_atomic_block:
        raise RuntimeError("restore_failed_card_refund() joins the caller's transaction")
    reversed_already = _existing(debit.org_id, _reversal_key(debit)) is not None
    if not reversed_already and refundable_remainder(debit) == 0:
        return None
    return _reverse_card_refund(debit, reason=reason, created_by=None)


def _reversal_key(debit: LedgerEntry) -> str:
    return f"card-refund-reversal:{debit.pk}"


def _reverse_card_refund(debit: LedgerEntry, *, reason: str, created_by: User | None) -> Posting:
    if debit.type != EntryType.CARD_REFUND:
        raise ValueError("only a refund-to-card debit is reversed")
    return _refund(
        lock_wallet(debit.org_id),
        entry=debit,
        amount_pence=None,
        reason=reason,
        idempotency_key=_reversal_key(debit),
        created_by=created_by,
    )


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
    _check_credit(amount_pence, EntryType.TOPUP)
    return _post(
        lock_wallet(org),
        amount_pence=amount_pence,
        type=EntryType.TOPUP,
        idempotency_key=idempotency_key,
        description=description,
    )


def record_money_gone(
    *,
    org: Organization | str,
    amount_pence: int,
    type: str,
    idempotency_key: str,
    description: str,
    created_by: User | None = None,
) -> Posting:
    """Debit money that has left (or, for support's refund to the card, is about to leave) at
    the provider: a refund to the card, a chargeback. Inside the caller's transaction. Always
    written, even when the balance goes below zero."""
    if not connection.in_atomic_block:
        raise RuntimeError("record_money_gone() joins the caller's transaction")
    if type not in ALWAYS_RECORDED_TYPES:
        raise ValueError(f"record_money_gone() cannot write {type!r} entries")
    _require_positive(amount_pence)
    return _post(
        lock_wallet(org),
        amount_pence=-amount_pence,
        type=type,
        idempotency_key=idempotency_key,
        description=description,
        created_by=created_by,
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


def unfreeze_by_support(*, org: Organization | str, reason: str) -> str | None:
    """Support allows spending from a frozen wallet again, in its own transaction.

    Returns the reason the wallet had been frozen for, or None when it was not frozen (nothing
    changed). A dispute still open stays open: if it is lost, the wallet is frozen again.
    Raises ValueError without a reason (the admin form requires one).
    """
    if not reason or not reason.strip():
        raise ValueError("unfreezing a wallet needs a reason")
    with transaction.atomic(durable=True):
        wallet = lock_wallet(org)
        lifted = wallet.frozen_reason if wallet.frozen_at is not None else None
        unfreeze_wallet(org=org)
    return lifted


# --- Calls (voice/ calls this from its webhook inbox and its reconciler) ------------------


def call_charge_key(vapi_call_id: str) -> str:
    return f"call:{vapi_call_id}"


def charge_call(
    *, org: Organization | str, vapi_call_id: str, amount_pence: int, description: str
) -> Posting:
    """Bill a finished call once, inside the caller's transaction: one `call_charge` entry keyed
    by the Vapi call id, written even when it takes the balance below zero (the call has
    happened; refusing is the job of the gate before it). A second charge for the same call is
    a replay (`created` False); a different amount for it raises IdempotencyKeyReused."""
    return record_money_gone(
        org=org,
        amount_pence=amount_pence,
        type=EntryType.CALL_CHARGE,
        idempotency_key=call_charge_key(vapi_call_id),
        description=description,
    )
