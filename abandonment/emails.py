"""What the abandonment emails say and how they are built: subjects, templates, signed
unsubscribe links. No database, no sending (that is services.py)."""

from __future__ import annotations

import uuid
from datetime import timedelta
from urllib.parse import urlsplit

from django.conf import settings
from django.core import signing
from django.core.mail import EmailMultiAlternatives

from abandonment.models import Sequence
from voxanne.emails import templated_email
from voxanne.errors import ApiError

TEMPLATES = {
    Sequence.SOFT_NUDGE: "soft_nudge",
    Sequence.PAIN_REMINDER: "pain_reminder",
    Sequence.OBJECTION_KILLER: "objection_killer",
}
UNSUBSCRIBE_SALT = "abandonment.unsubscribe"
WIZARD_PATH = "/onboarding"


def clinic_label(clinic_name: str | None) -> str:
    """The clinic's name on one line, or "your clinic" when it has none."""
    return " ".join((clinic_name or "").split()) or "your clinic"


def subject_for(sequence: int, clinic_name: str | None) -> str:
    """The subject line of email `sequence` for a clinic."""
    if sequence == Sequence.SOFT_NUDGE:
        return "Your AI receptionist is almost ready"
    if sequence == Sequence.PAIN_REMINDER:
        return f"How many calls did {clinic_label(clinic_name)} miss today?"
    if sequence == Sequence.OBJECTION_KILLER:
        return "We added £10 to your account"
    raise ValueError(f"no abandonment email {sequence}")


class InvalidUnsubscribeLink(ApiError):
    default_message = "This unsubscribe link is invalid or has expired."
    code = "invalid_unsubscribe_link"


def unsubscribe_token(*, org_id: uuid.UUID | str) -> str:
    """A signed, timestamped token naming only the org: it carries no address (it ends up in
    mailboxes, browser histories and proxies' logs)."""
    return signing.TimestampSigner(salt=UNSUBSCRIBE_SALT).sign(uuid.UUID(str(org_id)).hex)


def unsubscribe_url(token: str) -> str:
    return f"{settings.APP_BASE_URL.rstrip('/')}/api/abandonment/unsubscribe/{token}"


def read_unsubscribe_token(token: str) -> str:
    """The org id of a valid token. Raises InvalidUnsubscribeLink (bad, forged, expired).

    Links sent before the token named only the org (signed JSON of [org id, address]) keep
    working until they expire.
    """
    max_age = timedelta(days=settings.ABANDONMENT_UNSUBSCRIBE_MAX_AGE_DAYS)
    try:
        # Both formats are signed by the same signer; the old one's value is base64 JSON.
        org_id = signing.TimestampSigner(salt=UNSUBSCRIBE_SALT).unsign(token, max_age=max_age)
        if len(org_id) != 32:
            org_id, _address = signing.loads(token, salt=UNSUBSCRIBE_SALT, max_age=max_age)
        return str(uuid.UUID(org_id))
    except (signing.BadSignature, ValueError, TypeError, AttributeError):
        raise InvalidUnsubscribeLink() from None


def compose(
    *, org_id: uuid.UUID, clinic_name: str | None, email: str, sequence: int
) -> EmailMultiAlternatives:
    """Email `sequence` for one org: text and HTML parts, one-click unsubscribe headers."""
    base = settings.APP_BASE_URL.rstrip("/")
    link = unsubscribe_url(unsubscribe_token(org_id=org_id))
    context = {
        "clinic": clinic_label(clinic_name),
        "wizard_url": f"{base}{WIZARD_PATH}",
        "unsubscribe_url": link,
        "credit": "£10",
    }
    template = f"emails/abandonment/{TEMPLATES[sequence]}"
    domain = urlsplit(base).hostname or "voxanne.local"
    return templated_email(
        template,
        context,
        subject=subject_for(sequence, clinic_name),
        to=[email],
        headers={
            "List-Unsubscribe": f"<{link}>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
            # The same id for the same email, so a receiver can tell a duplicate.
            "Message-ID": f"<abandonment-{sequence}-{org_id}@{domain}>",
        },
    )
