"""What the abandonment emails say and how they are built: subjects, templates, signed
unsubscribe links. No database, no sending (that is services.py)."""

from __future__ import annotations

import uuid
from datetime import timedelta
from urllib.parse import urlsplit

from django.conf import settings
from django.core import signing
from django.core.mail import EmailMultiAlternatives
from django.template.loader import render_to_string

from abandonment.models import Sequence
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


def compose(
    *, org_id: uuid.UUID, clinic_name: str | None, email: str, sequence: int
) -> EmailMultiAlternatives:
    """Email `sequence` for one org: text and HTML parts, one-click unsubscribe headers."""
    base = settings.APP_BASE_URL.rstrip("/")
    link = unsubscribe_url(unsubscribe_token(org_id=org_id, email=email))
    context = {
        "clinic": clinic_label(clinic_name),
        "wizard_url": f"{base}{WIZARD_PATH}",
        "unsubscribe_url": link,
        "credit": "£10",
    }
    template = f"emails/abandonment/{TEMPLATES[sequence]}"
    domain = urlsplit(base).hostname or "voxanne.local"
    message = EmailMultiAlternatives(
        subject=subject_for(sequence, clinic_name),
        body=render_to_string(f"{template}.txt", context),
        to=[email],
        headers={
            "List-Unsubscribe": f"<{link}>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
            # The same id for the same email, so a receiver can tell a duplicate.
            "Message-ID": f"<abandonment-{sequence}-{org_id}@{domain}>",
        },
    )
    message.attach_alternative(render_to_string(f"{template}.html", context), "text/html")
    return message
