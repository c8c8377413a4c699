"""The number's monthly rental: renew on the anniversary, a grace period, then release.

`run_rental_pass(now=...)` is one daily pass (the beat task and `manage.py renew_numbers` both
call it). It is safe to run at any time, twice, or several times at once:

- Renewal: one transaction per number, wallet locked first, then the number's row. The month
  is debited with the key `number-rental:<number>:<yyyy-mm>` (the month the new period starts)
  and paid_until moves to the next anniversary in the same transaction. A second run finds
  paid_until already moved (and the key would replay anyway): one charge per month.
- Not enough money (or a frozen wallet): the number enters grace until paid_until +
  NUMBER_GRACE_DAYS; the renewal is retried every pass, and straight after a paid top-up.
- Emails on grace days 0, 3 and 6 and on release: each a NumberNotice row claimed with
  INSERT ... ON CONFLICT DO NOTHING before it is sent, so it goes out once.
- Grace over: the number is marked released by a conditional UPDATE (the claim: a renewal
  racing it holds the same row), then released at Vapi and Twilio through provisioning's undo
  (`release_at_providers`, with its retries). An undo that cannot finish now is retried by the
  next pass and by the provisioning reconciler (`finish_releases`). Nothing more is charged.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from billing import services as billing
from billing.models import LedgerEntry, format_pence
from onboarding.models import GRACE_NOTICE_DAYS, ManagedPhoneNumber, NoticeKind, NumberNotice
from onboarding.provisioning import release_at_providers
from voxanne import db
from voxanne.emails import templated_email
from voxanne.errors import ApiError, NotFound
from voxanne.models import Organization

logger = logging.getLogger(__name__)

# A pass that dies while releasing leaves the claim; the next one takes over after this.
RELEASE_LEASE = timedelta(minutes=5)
# A release a provider refused (after provisioning's own retries) is tried again after this.
RELEASE_RETRY_AFTER = timedelta(minutes=1)
# A claimed email whose sender died is given up after this (never resent: at most once).
NOTICE_CLAIM_TIMEOUT = timedelta(hours=1)


class GraceNotExtendable(ApiError):
    code = "grace_not_extendable"


def rental_key(number: ManagedPhoneNumber, period_start: datetime) -> str:
    """The ledger key of the month starting at `period_start`: once per number and month."""
    return f"number-rental:{number.phone_number}:{period_start:%Y-%m}"


def grace_ends(number: ManagedPhoneNumber) -> datetime:
    return number.paid_until + timedelta(days=settings.NUMBER_GRACE_DAYS)


def rental_history(number: ManagedPhoneNumber):
    """The number's rental charges (and any refunds of them), newest first."""
    return LedgerEntry.objects.filter(
        Q(idempotency_key__startswith=f"number-rental:{number.phone_number}:")
        | Q(reverses__idempotency_key__startswith=f"number-rental:{number.phone_number}:"),
        org_id=number.org_id,
    ).order_by("-sequence")


def number_for(org: Organization) -> ManagedPhoneNumber:
    """The clinic's number: its active one, else the newest it had. Raises NotFound."""
    numbers = ManagedPhoneNumber.objects.for_org(org)
    number = numbers.filter(status=ManagedPhoneNumber.Status.ACTIVE).first() or numbers.first()
    if number is None:
        raise NotFound("This clinic has no phone number yet.")
    return number


# --- Renewal -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Renewal:
    outcome: str  # renewed | grace | not_due | released
    months: int = 0  # months charged by this call


def renew(number_id: uuid.UUID | str, *, now: datetime) -> Renewal:
    """Charge every month of the number that is due at `now`, one transaction per month.

    Short of money (or frozen): the number enters (or stays in) grace. Run in system context.
    """
    months = 0
    while True:
        with transaction.atomic(durable=True):
            found = ManagedPhoneNumber.objects.filter(pk=number_id).values("org_id").first()
            if found is None:
                return Renewal("not_due", months)
            billing.lock_wallet(found["org_id"])  # wallet first, always
            number = ManagedPhoneNumber.objects.select_for_update().get(pk=number_id)
            if number.status != ManagedPhoneNumber.Status.ACTIVE:
                return Renewal("released", months)
            if number.paid_until > now:
                return Renewal("renewed" if months else "not_due", months)
            try:
                with transaction.atomic():
                    billing.charge_number_rental(
                        org=number.org_id,
                        amount_pence=settings.NUMBER_MONTHLY_PENCE,
                        idempotency_key=rental_key(number, number.paid_until),
                        description=(
                            f"Phone number {number.phone_number}, "
                            f"month from {number.paid_until:%d %b %Y}"
                        ),
                    )
            except (billing.InsufficientFunds, billing.WalletOnHold) as refused:
                if number.grace_until is None:
                    number.grace_until = grace_ends(number)
                    number.save(update_fields=["grace_until", "updated_at"])
                    logger.warning(
                        "number rental unpaid: grace until %s",
                        number.grace_until,
                        extra={"org_id": str(number.org_id), "reason": refused.code},
                    )
                return Renewal("grace", months)
            number.months_paid += 1
            number.paid_until = number.month_end(number.months_paid)
            number.grace_until = None
            number.grace_extended_reason = ""
            number.save(
                update_fields=[
                    "months_paid",
                    "paid_until",
                    "grace_until",
                    "grace_extended_reason",
                    "updated_at",
                ]
            )
            months += 1


def renew_for_org(org_id: uuid.UUID | str, *, now: datetime | None = None) -> Renewal | None:
    """Retry the renewal of an org's number in grace (after a top-up). None: nothing to do."""
    number = ManagedPhoneNumber.objects.filter(
        org_id=org_id, status=ManagedPhoneNumber.Status.ACTIVE, grace_until__isnull=False
    ).first()
    if number is None:
        return None
    return renew(number.pk, now=now or timezone.now())


def on_topup_paid(sender, topup, **kwargs) -> None:
    """A paid top-up (inside its transaction): retry a renewal in grace once it commits."""
    from onboarding.tasks import renew_number_for_org

    # The org's one active number (a unique index), read by voxanne/db.py: this runs in every
    # paid delivery, where the ORM's exists() was a fifth of the delivery's Python.
    number = db.get(
        ManagedPhoneNumber, org_id=topup.org_id, status=ManagedPhoneNumber.Status.ACTIVE
    )
    if number is not None and number.grace_until is not None:
        renew_number_for_org.delay_on_commit(str(topup.org_id))


# --- Support: extend grace -----------------------------------------------------------------


def extend_grace(
    *,
    number: ManagedPhoneNumber,
    days: int,
    reason: str,
    seen_grace_until: datetime | None = None,
) -> ManagedPhoneNumber:
    """Keep a number in grace `days` longer (from its current end, or from now if that has
    passed). `seen_grace_until`, when given, must still be the grace end (a form submitted
    twice extends once). Raises GraceNotExtendable unless the number is in grace, the grace
    end is the one seen, and a reason is given."""
    if not reason or not reason.strip():
        raise GraceNotExtendable("Give a reason.")
    if not 1 <= days <= 60:
        raise GraceNotExtendable("Extend grace by 1 to 60 days.")
    with transaction.atomic(durable=True):
        billing.lock_wallet(number.org_id)
        locked = ManagedPhoneNumber.objects.select_for_update().get(pk=number.pk)
        if locked.status != ManagedPhoneNumber.Status.ACTIVE or locked.grace_until is None:
            raise GraceNotExtendable("Only a number in its grace period can be given more time.")
        if seen_grace_until is not None and locked.grace_until != seen_grace_until:
            raise GraceNotExtendable(
                "The grace period changed since this form was opened (was it submitted twice?). "
                "Reload the page to extend it again."
            )
        locked.grace_until = max(locked.grace_until, timezone.now()) + timedelta(days=days)
        locked.grace_extended_reason = reason.strip()[:500]
        locked.save(update_fields=["grace_until", "grace_extended_reason", "updated_at"])
    return locked


# --- Release -------------------------------------------------------------------------------


def _claim_release(number_id, *, now: datetime) -> bool:
    """Mark a number whose grace ran out released, if it still is (exactly one winner)."""
    with transaction.atomic(durable=True):
        found = ManagedPhoneNumber.objects.filter(pk=number_id).values("org_id").first()
        if found is None:
            return False
        billing.lock_wallet(found["org_id"])  # as renewal does: the two never interleave
        return (
            ManagedPhoneNumber.objects.filter(
                pk=number_id, status=ManagedPhoneNumber.Status.ACTIVE, grace_until__lte=now
            ).update(
                status=ManagedPhoneNumber.Status.RELEASED,
                released_at=now,
                release_lease_until=timezone.now() + RELEASE_LEASE,
                updated_at=timezone.now(),
            )
            == 1
        )


def _claim_retry(number_id) -> bool:
    """Take a released number whose provider release is unfinished and not being done."""
    moment = timezone.now()
    return (
        ManagedPhoneNumber.objects.filter(
            pk=number_id,
            status=ManagedPhoneNumber.Status.RELEASED,
            provider_released_at__isnull=True,
        )
        .filter(Q(release_lease_until__isnull=True) | Q(release_lease_until__lt=moment))
        .update(release_lease_until=moment + RELEASE_LEASE, updated_at=moment)
        == 1
    )


def _release_at_providers(number_id) -> bool:
    number = ManagedPhoneNumber.objects.get(pk=number_id)
    done = release_at_providers(number, what=f"release of number {number.phone_number}")
    moment = timezone.now()
    if done:
        ManagedPhoneNumber.objects.filter(pk=number_id).update(
            provider_released_at=moment, release_lease_until=None, updated_at=moment
        )
        logger.info("released number %s at Vapi and Twilio", number.phone_number)
    else:  # the provisioning reconciler (every minute) or the next pass tries again
        ManagedPhoneNumber.objects.filter(pk=number_id).update(
            release_lease_until=moment + RELEASE_RETRY_AFTER, updated_at=moment
        )
    return done


def finish_releases(*, limit: int = 100) -> int:
    """Retry the provider side of released numbers not yet gone at Vapi and Twilio.
    Returns how many are now gone. Safe to run concurrently (each is claimed first)."""
    pending = ManagedPhoneNumber.objects.filter(
        status=ManagedPhoneNumber.Status.RELEASED, provider_released_at__isnull=True
    ).filter(Q(release_lease_until__isnull=True) | Q(release_lease_until__lt=timezone.now()))
    done = 0
    for number_id in pending.order_by("released_at").values_list("pk", flat=True)[:limit]:
        if _claim_retry(number_id):
            done += _release_at_providers(number_id)
    return done


# --- Emails --------------------------------------------------------------------------------

_SUBJECTS = {
    NoticeKind.GRACE_DAY_0: "Action needed: we could not renew your Voxanne number",
    NoticeKind.GRACE_DAY_3: "Reminder: your Voxanne number is due for renewal",
    NoticeKind.GRACE_DAY_6: "Last day: your Voxanne number will be released tomorrow",
    NoticeKind.RELEASED: "Your Voxanne number has been released",
}


def _send_notice(number: ManagedPhoneNumber, kind: str) -> bool:
    """Claim, send, record one notice. False when it was already claimed (or no recipient).
    A send that raises releases the claim, so the next pass tries again."""
    org = Organization.objects.select_related("owner").get(pk=number.org_id)
    recipient = getattr(org.owner, "email", "") or ""
    if not recipient:
        return False
    claim = NumberNotice(
        org_id=number.org_id,
        number=number,
        period_due_at=number.paid_until,
        kind=kind,
        recipient=recipient,
        claimed_at=timezone.now(),
    )
    NumberNotice.objects.bulk_create([claim], ignore_conflicts=True)
    if not NumberNotice.objects.filter(pk=claim.pk).exists():
        return False  # another run holds (or sent) it
    wallet = billing.wallet_for(number.org_id)
    context = {
        "clinic": org.clinic_name or "your clinic",
        "number": number.phone_number,
        "price": format_pence(settings.NUMBER_MONTHLY_PENCE),
        "balance": format_pence(wallet.balance_pence),
        "due": number.paid_until,
        "grace_until": number.grace_until or grace_ends(number),
        "topup_url": f"{settings.APP_BASE_URL}/billing",
        "kind": kind,
        "released": kind == NoticeKind.RELEASED,
    }
    template = "number_released" if kind == NoticeKind.RELEASED else "number_grace"
    message = templated_email(
        f"emails/onboarding/{template}", context, subject=_SUBJECTS[kind], to=[recipient]
    )
    try:
        message.send()
    except Exception:
        logger.exception("could not send the %s email for number %s", kind, number.phone_number)
        NumberNotice.objects.filter(pk=claim.pk, state=NumberNotice.State.SENDING).delete()
        return False
    NumberNotice.objects.filter(pk=claim.pk).update(
        state=NumberNotice.State.SENT, sent_at=timezone.now()
    )
    return True


def _due_grace_notice(number: ManagedPhoneNumber, now: datetime) -> str | None:
    """The latest grace email due at `now` (an earlier one missed is not sent late)."""
    for kind, after in GRACE_NOTICE_DAYS.items():
        if now >= number.paid_until + after:
            return kind
    return None


# --- One pass ------------------------------------------------------------------------------


@dataclass
class RentalSummary:
    now: str = ""
    due: int = 0
    renewed: int = 0
    months_charged: int = 0
    in_grace: int = 0
    released: int = 0
    provider_releases_finished: int = 0
    emails_sent: dict[str, int] = field(default_factory=lambda: {k: 0 for k in NoticeKind.values})

    def as_dict(self) -> dict[str, object]:
        return {
            "now": self.now,
            "due": self.due,
            "renewed": self.renewed,
            "months_charged": self.months_charged,
            "in_grace": self.in_grace,
            "released": self.released,
            "provider_releases_finished": self.provider_releases_finished,
            "emails_sent": dict(self.emails_sent),
        }


def run_rental_pass(*, now: datetime | None = None) -> RentalSummary:
    """One daily pass at `now`: renew what is due, email and release what is in grace,
    finish releases left unfinished. Run in system context."""
    now = now or timezone.now()
    summary = RentalSummary(now=now.isoformat())
    due = ManagedPhoneNumber.objects.filter(
        status=ManagedPhoneNumber.Status.ACTIVE, paid_until__lte=now
    ).order_by("paid_until")
    for number_id in due.values_list("pk", flat=True).iterator():
        summary.due += 1
        result = renew(number_id, now=now)
        summary.months_charged += result.months
        if result.outcome == "renewed":
            summary.renewed += 1
        elif result.outcome == "grace":
            _after_failed_renewal(number_id, now=now, summary=summary)
    summary.provider_releases_finished += finish_releases()
    summary.emails_sent[NoticeKind.RELEASED] += _notify_unnotified_releases()
    return summary


def _notify_unnotified_releases() -> int:
    """The release email of numbers whose pass died before sending it."""
    told = NumberNotice.objects.filter(number=OuterRef("pk"), kind=NoticeKind.RELEASED)
    untold = ManagedPhoneNumber.objects.filter(
        status=ManagedPhoneNumber.Status.RELEASED, grace_until__isnull=False
    ).exclude(Exists(told))
    return sum(_send_notice(number, NoticeKind.RELEASED) for number in untold[:100])


def _after_failed_renewal(number_id, *, now: datetime, summary: RentalSummary) -> None:
    number = ManagedPhoneNumber.objects.get(pk=number_id)
    if number.grace_until is not None and now >= number.grace_until:
        if _claim_release(number_id, now=now):
            summary.released += 1
            logger.warning(
                "number %s released: its rental was not paid by the end of grace",
                number.phone_number,
                extra={"org_id": str(number.org_id)},
            )
            summary.provider_releases_finished += _release_at_providers(number_id)
            number.refresh_from_db()
            if _send_notice(number, NoticeKind.RELEASED):
                summary.emails_sent[NoticeKind.RELEASED] += 1
        return
    summary.in_grace += 1
    kind = _due_grace_notice(number, now)
    if kind and _send_notice(number, kind):
        summary.emails_sent[kind] += 1
