"""Writes of the core: signing up a clinic, verifying its owner's email address."""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.contrib.auth.password_validation import validate_password
from django.core import signing
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from voxanne.emails import templated_email
from voxanne.errors import ApiError, ServiceUnavailable
from voxanne.models import Organization, User
from voxanne.signals import organization_created
from voxanne.tenancy import system_context

logger = logging.getLogger(__name__)

SIGNUP_REFUSED = "An account cannot be created with this email address. Try signing in instead."


class SignupRefused(ApiError):
    default_message = SIGNUP_REFUSED
    code = "signup_refused"


class WeakPassword(ApiError):
    code = "weak_password"


@dataclass(frozen=True)
class SignupResult:
    organization: Organization
    user: User


def sign_up(*, email: str, password: str, clinic_name: str | None = None) -> SignupResult:
    """Create a clinic and its owner in one transaction, with everything an org needs.

    Raises SignupRefused (email taken) or WeakPassword (Django's validators).
    """
    email = User.objects.normalize_email(email).lower()
    try:
        validate_password(password, User(email=email))
    except ValidationError as exc:
        raise WeakPassword(" ".join(exc.messages)) from None
    clinic_name = (clinic_name or "").strip()[:200] or None
    with system_context("signup"):
        try:
            with transaction.atomic():
                if User.objects.filter(email=email).exists():
                    raise SignupRefused()
                org = Organization.objects.create(clinic_name=clinic_name)
                user = User.objects.create_user(email=email, password=password, organization=org)
                org.owner = user
                org.save(update_fields=["owner", "updated_at"])
                organization_created.send(sender=Organization, organization=org)
        except IntegrityError:
            raise SignupRefused() from None
    return SignupResult(organization=org, user=user)


# --- Email verification ----------------------------------------------------------------------

VERIFY_EMAIL_SALT = "voxanne.verify-email"
VERIFY_EMAIL_MAX_AGE = timedelta(days=7)


class InvalidVerificationLink(ApiError):
    default_message = "This verification link is invalid or has expired."
    code = "invalid_verification_link"


class VerificationEmailUnavailable(ServiceUnavailable):
    default_message = "We could not send the email just now. Please try again in a few minutes."
    code = "email_unavailable"


def email_verification_token(user: User) -> str:
    """A signed, timestamped token naming only the user (no address: links end up in logs)."""
    return signing.TimestampSigner(salt=VERIFY_EMAIL_SALT).sign(user.pk.hex)


def email_verification_url(token: str) -> str:
    return f"{settings.APP_BASE_URL.rstrip('/')}/api/auth/verify-email/{token}"


def _user_of_link(token: str) -> User:
    try:
        user_id = signing.TimestampSigner(salt=VERIFY_EMAIL_SALT).unsign(
            token, max_age=VERIFY_EMAIL_MAX_AGE
        )
        user_id = uuid.UUID(hex=user_id)
    except (signing.BadSignature, ValueError):
        raise InvalidVerificationLink() from None
    with system_context("verify email"):
        user = User.objects.filter(pk=user_id, is_active=True).first()
    if user is None:
        raise InvalidVerificationLink()
    return user


def email_verification_status(*, token: str) -> User:
    """The user a verification link is for. Raises InvalidVerificationLink."""
    return _user_of_link(token)


def verify_email(*, token: str) -> User:
    """Mark the link's address verified (idempotent: the first time counts).

    Raises InvalidVerificationLink (bad, forged, expired, or its user is gone).
    """
    user = _user_of_link(token)
    with system_context("verify email"):
        User.objects.filter(pk=user.pk, email_verified_at__isnull=True).update(
            email_verified_at=timezone.now()
        )
        user.refresh_from_db(fields=["email_verified_at"])
    return user


def send_verification_email(user: User, *, fail_quietly: bool = False) -> None:
    """Email `user` a link that verifies their address. Call it outside any transaction.

    Raises VerificationEmailUnavailable when the email server fails, unless `fail_quietly`
    (then the failure is only logged: sign-up must not fail for it, the wizard can resend).
    """
    context = {
        "email": user.email,
        "verify_url": email_verification_url(email_verification_token(user)),
        "max_age_days": VERIFY_EMAIL_MAX_AGE.days,
    }
    message = templated_email(
        "emails/verify_email",
        context,
        subject="Confirm your email address for Voxanne",
        from_email=settings.DEFAULT_FROM_EMAIL,
        to=[user.email],
    )
    try:
        message.send()
    except Exception as exc:  # noqa: BLE001 - SMTP and socket errors alike
        logger.warning("verification email for user %s not sent: %r", user.pk, exc)
        if not fail_quietly:
            raise VerificationEmailUnavailable() from None


def resend_verification_email(user: User) -> bool:
    """Send the link again unless the address is verified already; says whether it was sent.

    Raises VerificationEmailUnavailable.
    """
    if user.email_verified_at is not None:
        return False
    send_verification_email(user)
    return True
