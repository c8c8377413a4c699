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
- The £10 bonus follows email 3's sent record, in billing's own transaction, keyed by the org;
  every run first completes credits owed by an earlier run that died in between.
"""

from __future__ import annotations

import logging
import smtplib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from django.conf import settings
from django.core import signing
from django.core.mail import EmailMultiAlternatives, get_connection
from django.db import connection
from django.template.loader import get_template
from django.utils import timezone

from abandonment.models import AbandonmentEmail, EmailState, OptOut, Sequence
from billing import services as billing
from billing.models import EntryType
from onboarding.models import EventName
from voxanne.errors import ApiError
from voxanne.models import Organization
from voxanne.tenancy import system_context

logger = logging.getLogger("abandonment")

CREDIT_PENCE = 1000
THRESHOLDS: dict[int, timedelta] = {
    Sequence.OBJECTION_KILLER: timedelta(hours=48),
    Sequence.PAIN_REMINDER: timedelta(hours=24),
    Sequence.SOFT_NUDGE: timedelta(hours=1),
}
TEMPLATES = {
    Sequence.SOFT_NUDGE: "soft_nudge",
    Sequence.PAIN_REMINDER: "pain_reminder",
    Sequence.OBJECTION_KILLER: "objection_killer",
}
UNSUBSCRIBE_SALT = "abandonment.unsubscribe"


def subject_for(sequence: int, clinic_name: str | None) -> str:
    """The subject line of email `sequence` for a clinic (its name, or "your clinic")."""
    if sequence == Sequence.SOFT_NUDGE:
        return "Your AI receptionist is almost ready"
    if sequence == Sequence.PAIN_REMINDER:
        clinic = " ".join((clinic_name or "").split()) or "your clinic"
        return f"How many calls did {clinic} miss today?"
    if sequence == Sequence.OBJECTION_KILLER:
        return "We added £10 to your account"
    raise ValueError(f"no abandonment email {sequence}")


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


class InvalidUnsubscribeLink(ApiError):
    default_message = "This unsubscribe link is invalid or has expired."
    code = "invalid_unsubscribe_link"


def unsubscribe_token(*, org_id: uuid.UUID | str, email: str) -> str:
    """A signed, timestamped token naming the org and the address it was sent to."""
    return signing.dumps([str(org_id), email], salt=UNSUBSCRIBE_SALT)


def unsubscribe_url(token: str) -> str:
    return f"{settings.APP_BASE_URL.rstrip('/')}/api/abandonment/unsubscribe/{token}"


def read_unsubscribe_token(token: str) -> tuple[str, str]:
    """(org id, email) of a valid token. Raises InvalidUnsubscribeLink (bad, forged, expired)."""
    max_age = timedelta(days=settings.ABANDONMENT_UNSUBSCRIBE_MAX_AGE_DAYS)
    try:
        org_id, email = signing.loads(token, salt=UNSUBSCRIBE_SALT, max_age=max_age)
        uuid.UUID(org_id)
    except (signing.BadSignature, ValueError, TypeError):
        raise InvalidUnsubscribeLink() from None
    return org_id, email


def unsubscribe(*, token: str) -> OptOut:
    """Record the opt-out a token asks for (idempotent). Raises InvalidUnsubscribeLink."""
    org_id, email = read_unsubscribe_token(token)
    with system_context("unsubscribe"):
        if not Organization.objects.filter(pk=org_id).exists():
            raise InvalidUnsubscribeLink()
        OptOut.objects.bulk_create([OptOut(org_id=org_id, email=email)], ignore_conflicts=True)
        return OptOut.objects.get(org_id=org_id)


def is_unsubscribed(org_id: uuid.UUID | str) -> bool:
    with system_context("unsubscribe"):
        return OptOut.objects.filter(org_id=org_id).exists()


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
    subject: str
    message: EmailMultiAlternatives
    row_id: uuid.UUID = field(default_factory=uuid.uuid4)


class EmailServiceDown(Exception):
    """The email backend cannot be reached at all: stop this run, the next one retries."""


def run_abandonment(
    *, now: datetime | None = None, dry_run: bool = False, batch_size: int | None = None
) -> RunSummary:
    """One pass of the job: send every abandoned org the email now due, then owed credits.

    `now` evaluates the thresholds as of that instant (claims and sent times stay wall-clock).
    With `dry_run` nothing is written or sent; `sent` counts what would be.
    Never raises for one org's failure (logged, counted in `failed`).
    """
    now = now or timezone.now()
    batch_size = batch_size or settings.ABANDONMENT_BATCH_SIZE
    summary = RunSummary(dry_run=dry_run)
    with system_context("abandonment"):
        if not dry_run:
            summary.unconfirmed = _settle_stale_claims()
        sender = _Sender(summary)
        try:
            for batch in candidate_batches(now=now, batch_size=batch_size):
                summary.candidates += len(batch)
                outgoing = _due(batch, now=now)
                if dry_run:
                    for item in outgoing:
                        summary.sent[str(item.sequence)] += 1
                    continue
                sender.send(outgoing)
        except EmailServiceDown:
            logger.error("email service unavailable: stopping this run, the next one retries")
        finally:
            sender.close()
        if not dry_run:
            _complete_credits(summary)
    logger.info("abandonment run finished", extra={"summary": summary.as_dict()})
    return summary


_CANDIDATES_SQL = """
WITH viewed AS (
    SELECT e.org_id, min(e.created_at) AS first_viewed_at
    FROM onboarding_onboardingevent e
    WHERE e.event_name = %(viewed)s AND e.org_id > %(after)s AND e.created_at <= %(now)s
    GROUP BY e.org_id
    ORDER BY e.org_id
    LIMIT %(limit)s
)
SELECT v.org_id, v.first_viewed_at, o.clinic_name, u.email,
    COALESCE((SELECT max(s.sequence) FROM abandonment_email s WHERE s.org_id = v.org_id), 0),
    (o.onboarding_completed_at IS NULL
        AND COALESCE(u.email, '') <> ''
        AND NOT EXISTS (SELECT 1 FROM onboarding_onboardingevent p
                        WHERE p.event_name = %(paid)s AND p.org_id = v.org_id)
        AND NOT EXISTS (SELECT 1 FROM abandonment_opt_out x WHERE x.org_id = v.org_id))
FROM viewed v
JOIN voxanne_organization o ON o.id = v.org_id
LEFT JOIN voxanne_user u ON u.id = o.owner_id
ORDER BY v.org_id
"""


def candidate_batches(*, now: datetime, batch_size: int) -> Iterator[list[Candidate]]:
    """Abandoned orgs, in batches of at most `batch_size`, one query per batch.

    Abandoned: a payment_viewed event (at or before `now`), no payment_success, onboarding not
    completed, an owner with an email address, not unsubscribed.
    """
    after = uuid.UUID(int=0)
    while True:
        with connection.cursor() as cursor:
            cursor.execute(
                _CANDIDATES_SQL,
                {
                    "viewed": EventName.PAYMENT_VIEWED,
                    "paid": EventName.PAYMENT_SUCCESS,
                    "after": after,
                    "now": now,
                    "limit": batch_size,
                },
            )
            rows = cursor.fetchall()
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
            for org_id, first_viewed_at, clinic_name, email, last_sequence, abandoned in rows
            if abandoned
        ]
        if batch:
            yield batch
        if len(rows) < batch_size:
            return


def _due(batch: list[Candidate], *, now: datetime) -> list[_Outgoing]:
    """The email due for each org: the highest passed threshold, if above what it already got.

    Never a lower one after a higher one (no back-fill): an org first seen at 49 hours gets
    email 3 only.
    """
    composer = _Composer()
    outgoing = []
    for candidate in batch:
        sequence = due_sequence(now - candidate.first_viewed_at)
        if sequence is None or sequence <= candidate.last_sequence:
            continue
        subject = subject_for(sequence, candidate.clinic_name)
        outgoing.append(
            _Outgoing(
                candidate=candidate,
                sequence=sequence,
                subject=subject,
                message=composer.compose(candidate, sequence, subject),
            )
        )
    return outgoing


class _Composer:
    """Builds the messages: templates loaded once per pass, one signed link per org."""

    def __init__(self) -> None:
        base = settings.APP_BASE_URL.rstrip("/")
        self.wizard_url = f"{base}/onboarding"
        self.domain = urlsplit(base).hostname or "voxanne.local"
        self.from_email = settings.DEFAULT_FROM_EMAIL
        self.templates = {
            (sequence, kind): get_template(f"emails/abandonment/{name}.{kind}")
            for sequence, name in TEMPLATES.items()
            for kind in ("txt", "html")
        }

    def compose(self, candidate: Candidate, sequence: int, subject: str) -> EmailMultiAlternatives:
        link = unsubscribe_url(unsubscribe_token(org_id=candidate.org_id, email=candidate.email))
        context = {
            "clinic": " ".join((candidate.clinic_name or "").split()) or "your clinic",
            "wizard_url": self.wizard_url,
            "unsubscribe_url": link,
            "credit": "£10",
        }
        message = EmailMultiAlternatives(
            subject=subject,
            body=self.templates[sequence, "txt"].render(context),
            from_email=self.from_email,
            to=[candidate.email],
            headers={
                "List-Unsubscribe": f"<{link}>",
                "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
                # The same id for the same email, so a receiver can tell a duplicate.
                "Message-ID": f"<abandonment-{sequence}-{candidate.org_id}@{self.domain}>",
            },
        )
        message.attach_alternative(self.templates[sequence, "html"].render(context), "text/html")
        return message


_CLAIM_SQL = """
INSERT INTO abandonment_email
    (id, org_id, sequence, state, recipient, subject, claim_token, claimed_at, credit_applied,
     created_at, updated_at)
SELECT c.id, c.org_id, c.sequence, 'sending', c.recipient, c.subject, %(token)s, %(at)s, false,
    %(at)s, %(at)s
FROM unnest(%(ids)s::uuid[], %(orgs)s::uuid[], %(sequences)s::smallint[], %(recipients)s::text[],
            %(subjects)s::text[]) AS c(id, org_id, sequence, recipient, subject)
WHERE NOT EXISTS (
    SELECT 1 FROM abandonment_email s WHERE s.org_id = c.org_id AND s.sequence >= c.sequence
)
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

    def __init__(self, summary: RunSummary) -> None:
        self.summary = summary
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

    def send(self, outgoing: list[_Outgoing]) -> None:
        for start in range(0, len(outgoing), self.chunk_size):
            self._send_chunk(outgoing[start : start + self.chunk_size])

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
        if down is not None:
            raise down


def _claim(chunk: list[_Outgoing], *, token: uuid.UUID) -> set[uuid.UUID]:
    """Claim rows for a chunk in one statement; returns the row ids this run now holds."""
    if not chunk:
        return set()
    with connection.cursor() as cursor:
        cursor.execute(
            _CLAIM_SQL,
            {
                "token": token,
                "at": timezone.now(),
                "ids": [item.row_id for item in chunk],
                "orgs": [item.candidate.org_id for item in chunk],
                "sequences": [item.sequence for item in chunk],
                "recipients": [item.candidate.email for item in chunk],
                "subjects": [item.subject for item in chunk],
            },
        )
        return {row[0] for row in cursor.fetchall()}


def _record(*, sent: list[_Outgoing], released: list[_Outgoing], token: uuid.UUID) -> None:
    """Mark the handed-over emails sent and drop the claims of those that failed."""
    at = timezone.now()
    with connection.cursor() as cursor:
        if sent:
            cursor.execute(
                "UPDATE abandonment_email SET state = 'sent', sent_at = %s, updated_at = %s "
                "WHERE id = ANY(%s) AND claim_token = %s AND state = 'sending'",
                [at, at, [item.row_id for item in sent], token],
            )
        if released:
            cursor.execute(
                "DELETE FROM abandonment_email "
                "WHERE id = ANY(%s) AND claim_token = %s AND state = 'sending'",
                [[item.row_id for item in released], token],
            )


def _settle_stale_claims() -> int:
    """Settle claims whose run died mid-send as `unconfirmed` (never resent). Returns how many."""
    timeout = timedelta(seconds=settings.ABANDONMENT_CLAIM_TIMEOUT_SECONDS)
    at = timezone.now()
    with connection.cursor() as cursor:
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


def _complete_credits(summary: RunSummary) -> None:
    """Give the £10 bonus for every email 3 handed over whose credit is not recorded yet."""
    after = uuid.UUID(int=0)
    batch_size = settings.ABANDONMENT_BATCH_SIZE
    while True:
        owed = list(
            AbandonmentEmail.objects.filter(
                sequence=Sequence.OBJECTION_KILLER, credit_applied=False, org_id__gt=after
            )
            .exclude(state=EmailState.SENDING)
            .order_by("org_id")
            .values_list("id", "org_id")[:batch_size]
        )
        if not owed:
            return
        after = owed[-1][1]
        credited = []
        for row_id, org_id in owed:
            try:
                billing.credit(
                    org=org_id,
                    amount_pence=CREDIT_PENCE,
                    type=EntryType.BONUS,
                    idempotency_key=credit_key(org_id),
                    description="Abandonment email 3: £10 added to your account",
                )
            except Exception:  # noqa: BLE001 - one org's failure must not stop the others
                summary.failed += 1
                logger.exception("abandonment credit for org %s failed; next run retries", org_id)
            else:
                credited.append(row_id)
        if credited:
            AbandonmentEmail.objects.filter(id__in=credited).update(
                credit_applied=True, updated_at=timezone.now()
            )
            summary.credited += len(credited)
        if len(owed) < batch_size:
            return
