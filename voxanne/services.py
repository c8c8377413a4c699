"""Writes of the core: signing up a clinic."""

from __future__ import annotations

from dataclasses import dataclass

from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from voxanne.errors import ApiError
from voxanne.models import Organization, User
from voxanne.signals import organization_created
from voxanne.tenancy import system_context

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
