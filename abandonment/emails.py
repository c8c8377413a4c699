"""What the abandonment emails say and how they are built: subjects, templates, signed
unsubscribe links. No database, no sending (that is services.py)."""

from __future__ import annotations

import copy
import functools
import uuid
from datetime import timedelta
from email.message import Message
from email.utils import formatdate
from urllib.parse import urlsplit

from django.conf import settings
from django.core import signing
from django.core.mail import EmailMultiAlternatives
from django.core.mail.message import (
    RFC5322_EMAIL_LINE_LENGTH_LIMIT,
    SafeMIMEMultipart,
    SafeMIMEText,
    forbid_multi_line_headers,
)
from django.template.loader import get_template
from django.utils.html import escape

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
        payload = signing.loads(token, salt=UNSUBSCRIBE_SALT, max_age=max_age)
    except (signing.BadSignature, ValueError):
        raise InvalidUnsubscribeLink() from None
    # Signed by us, but by any version of us: check the shape rather than trust it.
    if not (
        isinstance(payload, list) and len(payload) == 2 and all(isinstance(p, str) for p in payload)
    ):
        raise InvalidUnsubscribeLink()
    org_id, email = payload
    try:
        uuid.UUID(org_id)
    except ValueError:
        raise InvalidUnsubscribeLink() from None
    return org_id, email


class Composer:
    """Builds the messages of one pass: one signed link per org, templates rendered once.

    Each template is rendered once per pass with placeholders for the two values that differ
    per org (the clinic's name and its unsubscribe link); each org's email then only replaces
    them (HTML-escaping the name in the HTML part), ten times cheaper than rendering per org.
    `render()` gives the same text as a direct render (tests hold the two equal).
    """

    _CLINIC = "\x00clinic\x00"
    _LINK = "\x00unsubscribe\x00"

    def __init__(self) -> None:
        base = settings.APP_BASE_URL.rstrip("/")
        self.wizard_url = f"{base}{WIZARD_PATH}"
        self.domain = urlsplit(base).hostname or "voxanne.local"
        self.from_email = settings.DEFAULT_FROM_EMAIL
        context = self.context(clinic=self._CLINIC, unsubscribe_url=self._LINK)
        self.rendered = {
            (sequence, kind): get_template(f"emails/abandonment/{name}.{kind}").render(context)
            for sequence, name in TEMPLATES.items()
            for kind in ("txt", "html")
        }

    def context(self, *, clinic: str, unsubscribe_url: str) -> dict[str, str]:
        return {
            "clinic": clinic,
            "wizard_url": self.wizard_url,
            "unsubscribe_url": unsubscribe_url,
            "credit": "£10",
        }

    def render(self, sequence: int, kind: str, *, clinic_name: str | None, link: str) -> str:
        clinic = clinic_label(clinic_name)
        text = self.rendered[sequence, kind]
        if kind == "html":
            clinic, link = escape(clinic), escape(link)
        return text.replace(self._CLINIC, clinic).replace(self._LINK, link)

    def compose(
        self, *, org_id: uuid.UUID, clinic_name: str | None, email: str, sequence: int
    ) -> AbandonmentMessage:
        """Email `sequence` for one org: text and HTML parts, one-click unsubscribe headers."""
        link = unsubscribe_url(unsubscribe_token(org_id=org_id, email=email))
        message = AbandonmentMessage(
            subject=subject_for(sequence, clinic_name),
            body=self.render(sequence, "txt", clinic_name=clinic_name, link=link),
            from_email=self.from_email,
            to=[email],
            headers={
                "List-Unsubscribe": f"<{link}>",
                "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
                # The same id for the same email, so a receiver can tell a duplicate.
                "Message-ID": f"<abandonment-{sequence}-{org_id}@{self.domain}>",
            },
        )
        message.attach_alternative(
            self.render(sequence, "html", clinic_name=clinic_name, link=link), "text/html"
        )
        return message


# The subjects and the sender repeat across a pass's emails: made safe (checked for newlines,
# RFC 2047-encoded) once per distinct value. Per-clinic values (address, link) are not kept.
_REPEATED_HEADERS = frozenset({"Subject", "From"})
_safe_repeated_header = functools.lru_cache(maxsize=1024)(forbid_multi_line_headers)


@functools.cache
def _text_part_prototype(subtype: str, transfer_encoding: str) -> SafeMIMEText:
    """A text part made by Django, for copying: same headers, any payload of its class."""
    sample = "x" if transfer_encoding == "7bit" else "\u00a3"
    part = SafeMIMEText(sample, subtype, "utf-8")
    if part["Content-Transfer-Encoding"] != transfer_encoding:
        raise RuntimeError(f"Django no longer makes this {subtype} part {transfer_encoding}")
    return part


def _has_long_lines(text: str) -> bool:
    # Over-counts rather than under-counts Django's test (fewer line breaks than str.splitlines).
    lines = text.encode("utf-8", "surrogateescape").splitlines()
    return max(map(len, lines), default=0) > RFC5322_EMAIL_LINE_LENGTH_LIMIT


class AbandonmentMessage(EmailMultiAlternatives):
    """An email of the sequence: Django's EmailMultiAlternatives, with a cheaper `message()`.

    A pass builds tens of thousands of these. Django builds every MIME part from nothing
    (setting a charset parses the part's own Content-Type back) and encodes the subject again
    for every email, which made the MIME half of a pass's Python time. This `message()` gives
    the same MIME from parts made once: each text part is a copy of a part Django made for the
    same subtype and transfer encoding, holding this email's text, and the subject and sender
    are made safe once per distinct value. Whatever the copies would not reproduce (another charset,
    attachments, a line over 998 octets, which Django quoted-printable encodes) takes Django's
    own path. Tests hold the bytes equal to Django's for any clinic name and address.
    """

    def message(self):
        encoding = self.encoding or settings.DEFAULT_CHARSET
        given = {name.lower() for name in self.extra_headers}
        texts = [(self.body, self.content_subtype)]
        for content, mimetype in self.alternatives:
            basetype, _, subtype = mimetype.partition("/")
            texts.append((content, subtype if basetype == "text" else None))
        if (
            encoding != "utf-8"
            or self.attachments
            or not self.body
            or not self.alternatives
            or "message-id" not in given  # Django makes one; ours always name their own
            or any(subtype is None or _has_long_lines(text) for text, subtype in texts)
        ):
            return super().message()
        msg = SafeMIMEMultipart(_subtype=self.alternative_subtype, encoding=encoding)
        for text, subtype in texts:
            msg.attach(self._text_part(text, subtype))

        def put(name: str, value: str) -> None:
            safe = _safe_repeated_header if name in _REPEATED_HEADERS else forbid_multi_line_headers
            Message.__setitem__(msg, *safe(name, str(value), encoding))

        put("Subject", self.subject)
        put("From", self.extra_headers.get("From", self.from_email))
        for name, values in (("To", self.to), ("Cc", self.cc), ("Reply-To", self.reply_to)):
            if name in self.extra_headers:
                put(name, self.extra_headers[name])
            elif values:
                put(name, ", ".join(str(value) for value in values))
        if "date" not in given:
            put("Date", formatdate(localtime=settings.EMAIL_USE_LOCALTIME))
        for name, value in self.extra_headers.items():
            if name.lower() not in {"from", "to", "cc", "reply-to"}:
                put(name, value)
        return msg

    @staticmethod
    def _text_part(text: str, subtype: str) -> SafeMIMEText:
        try:
            text.encode("ascii")
        except UnicodeEncodeError:
            transfer_encoding = "8bit"
        else:
            transfer_encoding = "7bit"
        part = copy.copy(_text_part_prototype(subtype, transfer_encoding))
        part._headers = list(part._headers)
        part.defects = []
        # What Message.set_payload stores for a utf-8 charset: the octets, surrogate-escaped.
        part._payload = text.encode("utf-8").decode("ascii", "surrogateescape")
        return part

    def __deepcopy__(self, memo):
        """Every field is a string, a list of strings or a dict of them (no attachments are
        made): copying the containers is a deep copy, without walking each string."""
        copied = copy.copy(self)
        for name in ("to", "cc", "bcc", "reply_to", "alternatives"):
            setattr(copied, name, list(getattr(self, name)))
        copied.extra_headers = dict(self.extra_headers)
        copied.attachments = copy.deepcopy(self.attachments, memo)
        return copied
