"""The only code that moves money. Every change is one ledger entry plus the balance change,
written in one transaction with the wallet row locked (wallet first, always).

Every function is idempotent by its key (unique per org): a retry with the same key and the
same request returns the first entry and writes nothing; the same key with a different request
raises IdempotencyKeyReused.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db import connection, transaction
from django.db.models import Sum

from billing.models import EntryType, LedgerEntry, Wallet, format_pence
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


def _post(
    *,
    wallet: Wallet,
    amount_pence: int,
    type: str,
    idempotency_key: str,
    description: str,
    reverses: LedgerEntry | None = None,
    created_by: User | None = None,
) -> Posting:
    """Append one entry to a locked wallet. Raises InsufficientFunds below zero."""
    new_balance = wallet.balance_pence + amount_pence
    if new_balance < 0:
        raise InsufficientFunds()
    wallet.balance_pence = new_balance
    wallet.last_sequence += 1
    wallet.save(update_fields=["balance_pence", "last_sequence", "updated_at"])
    entry = LedgerEntry.objects.create(
        org_id=wallet.org_id,
        wallet=wallet,
        sequence=wallet.last_sequence,
        type=type,
        amount_pence=amount_pence,
        balance_after_pence=new_balance,
        description=description[:500],
        reverses=reverses,
        idempotency_key=idempotency_key,
        created_by=created_by,
    )
    return Posting(entry, created=True)


def _existing(org_id, idempotency_key: str) -> LedgerEntry | None:
    if not idempotency_key or len(idempotency_key) > 255:
        raise ValueError("idempotency_key must be 1..255 characters")
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
    wallet = lock_wallet(org)
    existing = _existing(wallet.org_id, idempotency_key)
    if existing:
        return _replay(existing, type=type, amount_pence=amount_pence, reverses_id=None)
    return _post(
        wallet=wallet,
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
    wallet = lock_wallet(org)
    existing = _existing(wallet.org_id, idempotency_key)
    if existing:
        return _replay(existing, type=type, amount_pence=-amount_pence, reverses_id=None)
    return _post(
        wallet=wallet,
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
    wallet = lock_wallet(entry.org_id)
    existing = _existing(wallet.org_id, idempotency_key)
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
        wallet=wallet,
        amount_pence=amount,
        type=EntryType.REFUND,
        idempotency_key=idempotency_key,
        description=reason,
        reverses=entry,
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
    happen at most once. Raises InsufficientFunds.
    """
    if not connection.in_atomic_block:
        raise RuntimeError("hold_for_provisioning() joins the caller's transaction")
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
