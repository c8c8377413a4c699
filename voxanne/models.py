"""The core's data: clinics (organizations) and their staff (users)."""

from __future__ import annotations

import uuid

from django.contrib.auth.base_user import AbstractBaseUser, BaseUserManager
from django.contrib.auth.models import PermissionsMixin
from django.db import models
from django.db.models import Q


class TimestampedModel(models.Model):
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        abstract = True


class Organization(TimestampedModel):
    """A clinic: the tenant. Every tenant-owned row points at one."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    clinic_name = models.CharField(max_length=200, blank=True, null=True)
    specialty = models.CharField(max_length=100, blank=True, null=True)
    onboarding_completed_at = models.DateTimeField(null=True, blank=True)
    owner = models.OneToOneField(
        "voxanne.User",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="owned_organization",
    )

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.clinic_name or f"Clinic {str(self.id)[:8]}"

    @property
    def needs_onboarding(self) -> bool:
        return self.onboarding_completed_at is None


class UserManager(BaseUserManager):
    use_in_migrations = True

    def create_user(self, email: str, password: str | None = None, **extra) -> User:
        if not email:
            raise ValueError("An email address is required.")
        user = self.model(email=self.normalize_email(email).lower(), **extra)
        user.set_password(password)
        user.save(using=self._db)
        return user

    def get_by_natural_key(self, email: str) -> User:
        # Addresses are stored lowercased, so signing in (API and admin) ignores case.
        return self.get(email=self.normalize_email(email).lower())

    def create_superuser(self, email: str, password: str | None = None, **extra) -> User:
        extra.setdefault("is_staff", True)
        extra.setdefault("is_superuser", True)
        return self.create_user(email, password, **extra)


class User(AbstractBaseUser, PermissionsMixin):
    """Clinic staff (with an organization) or support staff (is_staff, no organization)."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    email = models.EmailField(unique=True)
    organization = models.ForeignKey(
        Organization, null=True, blank=True, on_delete=models.PROTECT, related_name="users"
    )
    is_active = models.BooleanField(default=True)
    is_staff = models.BooleanField(default=False)
    # When the owner opened the link sign-up emailed them (the abandonment bonus needs it).
    email_verified_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = UserManager()

    USERNAME_FIELD = "email"
    EMAIL_FIELD = "email"
    REQUIRED_FIELDS: list[str] = []

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(is_staff=True) | Q(organization__isnull=False),
                name="clinic_user_has_organization",
            )
        ]

    def __str__(self) -> str:
        return self.email
