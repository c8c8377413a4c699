"""Win back clinics that reached the payment step and left: three emails and a £10 credit.

`run_abandonment()` is one pass of the job (the Celery task and the `run_abandonment` command
both call it). It is safe to run at any time, twice, or several times at once:

- An org gets email n at most once, ever: a row in `abandonment_email` is claimed with
  `INSERT ... ON CONFLICT DO NOTHING` on UNIQUE(org, sequence) before the email is handed to
  the email backend, then marked sent. A send that raises releases the claim (no sent record,
  no credit), so the next run tries again.
- A run killed while handing emails over leaves claims in `sending`. After
  ABANDONMENT_CLAIM_TIMEOUT the next run settles them as `unconfirmed` and does NOT resend:
  the email may have been accepted a millisecond before the worker died, and an email must
  never go out twice (at-most-once). Email 3 settled this way still gets its credit: the clinic
  may have read "We added £10", and a promise kept twice is impossible (the ledger key) while a
  promise broken is not.
- The £10 bonus follows email 3's sent record, in billing's own transaction, keyed by the org.
  Every run first completes the credits owed by an earlier run that died in between.
- Queries do not grow per org: one candidate query per batch of orgs, one claim and one record
  statement per chunk of emails, one billing transaction per CREDIT_BATCH credits.
"""

from __future__ import annotations

import json
import logging
import smtplib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.core.mail import EmailMultiAlternatives, get_connection
from django.db import connection
from django.db.models import Exists, OuterRef, Subquery
from django.db.models.functions import Coalesce
from django.utils import timezone

from abandonment.emails import InvalidUnsubscribeLink, compose, read_unsubscribe_token
from abandonment.models import AbandonmentEmail, EmailState, OptOut, Sequence
from billing import services as billing
from billing.models import EntryType
from onboarding.services import payment_abandonment
from voxanne.models import Organization, User
from voxanne.tenancy import system_context

logger = logging.getLogger("abandonment")

CREDIT_PENCE = 1000
THRESHOLDS: dict[int, timedelta] = {
    Sequence.OBJECTION_KILLER: timedelta(hours=48),
    Sequence.PAIN_REMINDER: timedelta(hours=24),
    Sequence.SOFT_NUDGE: timedelta(hours=1),
}
# Credits per billing transaction (credit_many): one commit per batch, not per clinic.
CREDIT_BATCH = 100


def due_sequence(elapsed: timedelta) -> int | None:
    """The highest email whose threshold `elapsed` (since the first payment view) has passed."""
    for sequence, threshold in THRESHOLDS.items():
        if elapsed >= threshold:
            return int(sequence)
    return None


def credit_key(org_id: uuid.UUID | str) -> str:
    """Billing idempotency key of an org's abandonment bonus: one per org, ever."""
    return f"abandonment-credit:{org_id}"


# --- Unsubscribe -----------------------------------------------------------------------------


def _owner_address(org_id: str) -> str:
    """The address the org's emails go to (its owner's): the one an unsubscribe link is for."""
    org = Organization.objects.select_related("owner").filter(pk=org_id).first()
    if org is None:
        raise InvalidUnsubscribeLink()
    return org.owner.email if org.owner else ""


def unsubscribe(*, token: str) -> OptOut:
    """Record the opt-out a token asks for (idempotent). Raises InvalidUnsubscribeLink."""
    org_id = read_unsubscribe_token(token)
    with system_context("unsubscribe"):
        email = _owner_address(org_id)
        OptOut.objects.bulk_create([OptOut(org_id=org_id, email=email)], ignore_conflicts=True)
        return OptOut.objects.get(org_id=org_id)


def unsubscribe_status(*, token: str) -> tuple[str, bool]:
    """(address, whether it is unsubscribed) for a link. Raises InvalidUnsubscribeLink."""
    org_id = read_unsubscribe_token(token)
    with system_context("unsubscribe"):
        opt_out = OptOut.objects.filter(org_id=org_id).first()
        if opt_out is not None:
            return opt_out.email, True
        return _owner_address(org_id), False


# --- One pass ----------------------------------------------------------------------------------


@dataclass
class RunSummary:
    candidates: int = 0
    sent: dict[str, int] = field(default_factory=lambda: {"1": 0, "2": 0, "3": 0})
    credited: int = 0
    failed: int = 0
    unconfirmed: int = 0
    dry_run: bool = False

    def as_dict(self) -> dict[str, object]:
        return {
            "candidates": self.candidates,
            "sent": dict(self.sent),
            "credited": self.credited,
            "failed": self.failed,
            "unconfirmed": self.unconfirmed,
            "dry_run": self.dry_run,
        }


@dataclass(frozen=True)
class Shard:
    """Part `index` of `count` equal ranges of org ids. Shards run at once (one task each, on
    the worker's processes) together make one pass; the claims keep overlapping runs safe."""

    index: int = 0
    count: int = 1

    def __post_init__(self) -> None:
        if not 0 <= self.index < self.count:
            raise ValueError("a shard's index must be in 0..count-1")

    @property
    def first(self) -> uuid.UUID:
        return uuid.UUID(int=(2**128 * self.index) // self.count)

    @property
    def last(self) -> uuid.UUID:
        return uuid.UUID(int=(2**128 * (self.index + 1)) // self.count - 1)


WHOLE = Shard()


@dataclass(frozen=True)
class Candidate:
    org_id: uuid.UUID
    clinic_name: str | None
    email: str
    first_viewed_at: datetime
    last_sequence: int  # highest sequence with a row (any state), 0 for none


@dataclass
class _Outgoing:
    candidate: Candidate
    sequence: int
    message: EmailMultiAlternatives
    row_id: uuid.UUID = field(default_factory=uuid.uuid4)


class EmailServiceDown(Exception):
    """The email backend cannot be reached at all: stop this run, the next one retries."""


def run_abandonment(
    *,
    now: datetime | None = None,
    dry_run: bool = False,
    batch_size: int | None = None,
    shard: Shard = WHOLE,
) -> RunSummary:
    """One pass of the job: every abandoned org gets the email now due, email 3 its credit.

    `shard` limits the pass to that shard's orgs (all of them by default).
    `now` evaluates the thresholds as of that instant (claims and sent times stay wall-clock).
    With `dry_run` nothing is written or sent; `sent` counts what would be.
    Never raises for one org's failure (logged, counted in `failed`).
    """
    now = now or timezone.now()
    batch_size = batch_size or settings.ABANDONMENT_BATCH_SIZE
    summary = RunSummary(dry_run=dry_run)
    with system_context("abandonment"):
        if dry_run:
            for batch in candidate_batches(now=now, batch_size=batch_size, shard=shard):
                summary.candidates += len(batch)
                for _candidate, sequence in _due(batch, now=now):
                    summary.sent[str(sequence)] += 1
            return summary
        summary.unconfirmed = _settle_stale_claims()
        creditor = _Bonuses(summary, owed=_owed_credits(shard))
        sender = _Sender(summary, creditor)
        try:
            for batch in candidate_batches(now=now, batch_size=batch_size, shard=shard):
                summary.candidates += len(batch)
                sender.send(batch, now=now)
        except EmailServiceDown:
            logger.error("email service unavailable: stopping this run, the next one retries")
        finally:
            sender.close()
            creditor.finish()
    logger.info("abandonment run finished", extra={"summary": summary.as_dict()})
    return summary


def candidate_batches(
    *, now: datetime, batch_size: int, shard: Shard = WHOLE
) -> Iterator[list[Candidate]]:
    """Abandoned orgs, one query per `batch_size` orgs with onboarding not completed.

    Abandoned: viewed payment but not paid (onboarding's `payment_abandonment`, as of `now`),
    onboarding not completed, an owner with an email address, not unsubscribed. Each comes with
    its earliest payment view and the highest email it already has.
    """
    # Pages of the organizations table by primary key, the rest per org as subqueries: a
    # filter on the events would let the planner, misled by the row-level security policy's
    # selectivity, scan every event (or hash every user) on every batch.
    orgs = payment_abandonment(
        Organization.objects.filter(id__lte=shard.last, onboarding_completed_at__isnull=True),
        as_of=now,
    ).annotate(
        owner_email=Subquery(User.objects.filter(pk=OuterRef("owner_id")).values("email")[:1]),
        last_sequence=Coalesce(
            Subquery(
                AbandonmentEmail.objects.filter(org=OuterRef("pk"))
                .order_by("-sequence")
                .values("sequence")[:1]
            ),
            0,
        ),
        opted_out=Exists(OptOut.objects.filter(org=OuterRef("pk"))),
    )
    after = uuid.UUID(int=max(shard.first.int - 1, 0))
    while True:
        rows = list(
            orgs.filter(id__gt=after)
            .order_by("id")
            .values_list(
                "id",
                "clinic_name",
                "owner_email",
                "first_payment_view_at",
                "last_sequence",
                "viewed_payment_but_not_paid",
                "opted_out",
            )[:batch_size]
        )
        if not rows:
            return
        after = rows[-1][0]
        batch = [
            Candidate(
                org_id=org_id,
                clinic_name=clinic_name,
                email=email,
                first_viewed_at=first_viewed_at,
                last_sequence=last_sequence,
            )
            for org_id, clinic_name, email, first_viewed_at, last_sequence, abandoned, opted_out in rows
            if abandoned and email and not opted_out
        ]
        if batch:
            yield batch
        if len(rows) < batch_size:
            return


def _due(batch: list[Candidate], *, now: datetime) -> Iterator[tuple[Candidate, int]]:
    """The email due for each org: the highest passed threshold, if above what it already got.

    Never a lower one after a higher one (no back-fill): an org first seen at 49 hours gets
    email 3 only, and one that got email 3 gets nothing more.
    """
    for candidate in batch:
        sequence = due_sequence(now - candidate.first_viewed_at)
        if sequence is not None and sequence > candidate.last_sequence:
            yield candidate, sequence


# Rows arrive as one JSON document: far cheaper to adapt than five parameter arrays.
_CLAIM_SQL = """
INSERT INTO abandonment_email
    (id, org_id, sequence, state, recipient, subject, claim_token, claimed_at, credit_applied,
     created_at, updated_at)
SELECT c.id, c.org_id, c.sequence, 'sending', c.recipient, c.subject, %(token)s, %(at)s, false,
    %(at)s, %(at)s
FROM jsonb_to_recordset(%(rows)s::jsonb)
    AS c(id uuid, org_id uuid, sequence smallint, recipient text, subject text)
-- Nothing as high already there (an overlapping run at a later `now`): no back-fill. A scalar
-- subquery, probed per row through the index, where NOT EXISTS could become a full scan.
WHERE COALESCE((SELECT max(s.sequence) FROM abandonment_email s WHERE s.org_id = c.org_id), 0)
    < c.sequence
ON CONFLICT (org_id, sequence) DO NOTHING
RETURNING id
"""


class _Sender:
    """Claims, sends and records chunks of emails over one reused email connection."""

    # Connection-level errors: the service is down, not this recipient.
    _SERVICE_ERRORS = (
        smtplib.SMTPConnectError,
        smtplib.SMTPServerDisconnected,
        ConnectionError,
        TimeoutError,
    )

    def __init__(self, summary: RunSummary, creditor: _Bonuses) -> None:
        self.summary = summary
        self.creditor = creditor
        self.connection = None
        self.chunk_size = settings.ABANDONMENT_SEND_CHUNK
        self.consecutive_service_errors = 0

    def _connection(self):
        if self.connection is None:
            self.connection = get_connection(fail_silently=False)
            try:
                self.connection.open()
            except (OSError, smtplib.SMTPException) as exc:
                self.connection = None
                raise EmailServiceDown() from exc
        return self.connection

    def close(self) -> None:
        if self.connection is not None:
            try:
                self.connection.close()
            except (OSError, smtplib.SMTPException):
                logger.warning("closing the email connection failed", exc_info=True)
            self.connection = None

    def send(self, batch: list[Candidate], *, now: datetime) -> None:
        due = list(_due(batch, now=now))
        for start in range(0, len(due), self.chunk_size):
            chunk = [
                _Outgoing(
                    candidate=candidate,
                    sequence=sequence,
                    message=compose(
                        org_id=candidate.org_id,
                        clinic_name=candidate.clinic_name,
                        email=candidate.email,
                        sequence=sequence,
                    ),
                )
                for candidate, sequence in due[start : start + self.chunk_size]
            ]
            self._send_chunk(chunk)

    def _send_chunk(self, chunk: list[_Outgoing]) -> None:
        mail = self._connection()  # before claiming: a down service claims nothing
        token = uuid.uuid4()
        claimed = _claim(chunk, token=token)
        sent: list[_Outgoing] = []
        failed: list[_Outgoing] = []
        down: EmailServiceDown | None = None
        for item in chunk:
            if item.row_id not in claimed:
                continue  # another run holds it, or a higher email already went out
            if down is not None:
                failed.append(item)
                continue
            try:
                if mail.send_messages([item.message]) != 1:
                    raise smtplib.SMTPException("the email backend did not accept the message")
            except Exception as exc:  # noqa: BLE001 - one org's failure must not stop the others
                failed.append(item)
                logger.warning(
                    "abandonment email %s to org %s failed: %s",
                    item.sequence,
                    item.candidate.org_id,
                    exc,
                    extra={"org_id": str(item.candidate.org_id), "sequence": item.sequence},
                )
                self.close()  # a fresh connection for the next one
                if isinstance(exc, self._SERVICE_ERRORS):
                    self.consecutive_service_errors += 1
                    if self.consecutive_service_errors >= 3:
                        down = EmailServiceDown()
                        continue
                try:
                    mail = self._connection()
                except EmailServiceDown as exc_down:
                    down = exc_down
            else:
                sent.append(item)
                self.consecutive_service_errors = 0
        _record(sent=sent, released=failed, token=token)
        for item in sent:
            self.summary.sent[str(item.sequence)] += 1
        self.summary.failed += len(failed)
        self.creditor.pay(
            [
                (item.row_id, item.candidate.org_id)
                for item in sent
                if item.sequence == Sequence.OBJECTION_KILLER
            ]
        )
        if down is not None:
            raise down


def _claim(chunk: list[_Outgoing], *, token: uuid.UUID) -> set[uuid.UUID]:
    """Claim rows for a chunk in one statement; returns the row ids this run now holds."""
    if not chunk:
        return set()
    with connection.cursor() as cursor:
        rows = [
            {
                "id": str(item.row_id),
                "org_id": str(item.candidate.org_id),
                "sequence": item.sequence,
                "recipient": item.candidate.email,
                "subject": item.message.subject,
            }
            for item in chunk
        ]
        cursor.execute(_CLAIM_SQL, {"token": token, "at": timezone.now(), "rows": json.dumps(rows)})
        return {row[0] for row in cursor.fetchall()}


def _record(*, sent: list[_Outgoing], released: list[_Outgoing], token: uuid.UUID) -> None:
    """Mark the handed-over emails sent and drop the claims of those that failed."""
    at = timezone.now()
    claimed = AbandonmentEmail.objects.filter(claim_token=token, state=EmailState.SENDING)
    if sent:
        claimed.filter(id__in=[item.row_id for item in sent]).update(
            state=EmailState.SENT, sent_at=at, updated_at=at
        )
    if released:
        claimed.filter(id__in=[item.row_id for item in released]).delete()


def _settle_stale_claims() -> int:
    """Settle claims whose run died mid-send as `unconfirmed` (never resent). Returns how many."""
    timeout = timedelta(seconds=settings.ABANDONMENT_CLAIM_TIMEOUT_SECONDS)
    at = timezone.now()
    with connection.cursor() as cursor:  # SQL for RETURNING: the ORM's update() gives a count
        cursor.execute(
            "UPDATE abandonment_email SET state = 'unconfirmed', sent_at = claimed_at, "
            "updated_at = %s WHERE state = 'sending' AND claimed_at < %s "
            "RETURNING org_id, sequence",
            [at, at - timeout],
        )
        settled = cursor.fetchall()
    for org_id, sequence in settled:
        logger.warning(
            "abandonment email %s to org %s: its run died mid-send; recorded as unconfirmed, "
            "not resent",
            sequence,
            org_id,
        )
    return len(settled)


def _owed_credits(shard: Shard) -> list[tuple[uuid.UUID, uuid.UUID]]:
    """(row id, org id) of every email 3 of the shard handed over whose credit is not recorded."""
    return list(
        AbandonmentEmail.objects.filter(
            sequence=Sequence.OBJECTION_KILLER,
            credit_applied=False,
            org__owner__email_verified_at__isnull=False,  # see _verified_owners_only
            org_id__gte=shard.first,
            org_id__lte=shard.last,
        )
        .exclude(state=EmailState.SENDING)
        .order_by("org_id")
        .values_list("id", "org_id")
    )


CREDIT_DESCRIPTION = "Abandonment email 3: £10 added to your account"


def _verified_owners_only(
    rows: list[tuple[uuid.UUID, uuid.UUID]],
) -> list[tuple[uuid.UUID, uuid.UUID]]:
    """The (row id, org id) pairs whose org's owner has verified their email address.

    The £10 is for real clinics, not throwaway sign-ups: an unverified owner's credit stays
    owed (credit_applied false) and the first pass after they verify pays it.
    """
    verified: set[uuid.UUID] = set()
    org_ids = [org_id for _, org_id in rows]
    for start in range(0, len(org_ids), 1000):
        verified.update(
            Organization.objects.filter(
                id__in=org_ids[start : start + 1000], owner__email_verified_at__isnull=False
            ).values_list("id", flat=True)
        )
    return [row for row in rows if row[1] in verified]


class _Bonuses:
    """Pays the £10 of each email 3 once it is recorded sent, CREDIT_BATCH to a billing
    transaction (`credit_many`), and records that on the email's row.

    Each credit is idempotent by the org's key. A batch billing refuses is paid one by one, so
    one clinic's refused credit does not hold back the others'.
    """

    def __init__(self, summary: RunSummary, *, owed: list[tuple[uuid.UUID, uuid.UUID]]) -> None:
        self.summary = summary
        self.due: list[tuple[uuid.UUID, uuid.UUID]] = []
        self.pay(owed)

    def pay(self, rows: list[tuple[uuid.UUID, uuid.UUID]]) -> None:
        """Owe these (email row, org) credits; every full batch is paid now."""
        rows = _verified_owners_only(rows)
        self.due.extend(rows)
        while len(self.due) >= CREDIT_BATCH:
            self._pay_batch(self.due[:CREDIT_BATCH])
            del self.due[:CREDIT_BATCH]

    def finish(self) -> None:
        """Pay what is still owed."""
        if self.due:
            self._pay_batch(self.due)
            self.due = []

    def _pay_batch(self, batch: list[tuple[uuid.UUID, uuid.UUID]]) -> None:
        try:
            billing.credit_many(orders=[_bonus(org_id) for _, org_id in batch])
            paid = [row_id for row_id, _ in batch]
        except Exception:  # noqa: BLE001 - find the org at fault one by one
            logger.warning("a batch of abandonment credits failed; paying one by one")
            paid = []
            for row_id, org_id in batch:
                try:
                    billing.credit_many(orders=[_bonus(org_id)])
                except Exception:  # noqa: BLE001 - one org's failure must not stop the others
                    logger.exception(
                        "abandonment credit for org %s failed; the next run retries", org_id
                    )
                    self.summary.failed += 1
                else:
                    paid.append(row_id)
        at = timezone.now()
        AbandonmentEmail.objects.filter(id__in=paid).update(credit_applied=True, updated_at=at)
        self.summary.credited += len(paid)


def _bonus(org_id: uuid.UUID) -> billing.CreditOrder:
    return billing.CreditOrder(
        org_id=org_id,
        amount_pence=CREDIT_PENCE,
        type=EntryType.BONUS,
        idempotency_key=credit_key(org_id),
        description=CREDIT_DESCRIPTION,
    )
