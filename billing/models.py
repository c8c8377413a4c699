"""The prepaid wallet: one balance per clinic and its append-only ledger, in pence.

Only billing/services.py writes these tables. The database holds the invariants
(see migrations/0002_ledger_invariants.py): balance >= 0, ledger rows immutable, a
refund never exceeds what is left of the entry it reverses, and at every commit the
balance equals the sum of the org's ledger amounts.
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.db.models import F, Q

from voxanne.models import Organization
from voxanne.tenancy import TenantQuerySet


def format_pence(pence: int) -> str:
    """1234 -> '£12.34', -50 -> '-£0.50'."""
    sign = "-" if pence < 0 else ""
    pounds, rest = divmod(abs(pence), 100)
    return f"{sign}£{pounds:,}.{rest:02d}"


class Wallet(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    org = models.OneToOneField(Organization, on_delete=models.PROTECT, related_name="wallet")
    balance_pence = models.BigIntegerField(default=0)
    # Sequence number of the org's newest ledger entry (0: none yet).
    last_sequence = models.BigIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = TenantQuerySet.as_manager()

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(balance_pence__gte=0), name="wallet_balance_not_negative"
            ),
            models.CheckConstraint(
                condition=Q(last_sequence__gte=0), name="wallet_sequence_not_negative"
            ),
        ]
        permissions = [
            ("issue_refund", "Can refund a wallet debit"),
            ("add_credit", "Can add credit to a wallet"),
        ]

    def __str__(self) -> str:
        return f"{self.org} wallet {self.balance_formatted}"

    @property
    def balance_formatted(self) -> str:
        return format_pence(self.balance_pence)


class EntryType(models.TextChoices):
    TOPUP = "topup", "Top-up"
    PHONE_PROVISIONING = "phone_provisioning", "Phone number"
    REFUND = "refund", "Refund"
    BONUS = "bonus", "Bonus"
    ADJUSTMENT = "adjustment", "Adjustment"


# What a clinic reads for money support moved by hand; support's own reason is kept apart as
# the entry's internal_note, which clinics never see.
SUPPORT_DESCRIPTIONS = {
    EntryType.TOPUP: "Top-up",
    EntryType.ADJUSTMENT: "Credit from Voxanne support",
    EntryType.REFUND: "Refund from Voxanne support",
}

CREDIT_TYPES = (EntryType.TOPUP, EntryType.BONUS, EntryType.REFUND)
DEBIT_TYPES = (EntryType.PHONE_PROVISIONING,)


class LedgerEntry(models.Model):
    """One movement of money. Immutable once written (a trigger refuses UPDATE/DELETE).

    No updated_at: an entry is never updated.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    org = models.ForeignKey(Organization, on_delete=models.PROTECT, related_name="ledger_entries")
    wallet = models.ForeignKey(Wallet, on_delete=models.PROTECT, related_name="entries")
    sequence = models.BigIntegerField()
    type = models.CharField(max_length=32, choices=EntryType.choices)
    amount_pence = models.BigIntegerField()
    balance_after_pence = models.BigIntegerField()
    description = models.CharField(max_length=500, blank=True)  # shown to the clinic
    # Staff only (admin): why support moved the money. The database default lets writers that
    # do not name the column go on appending.
    internal_note = models.CharField(max_length=500, blank=True, default="", db_default="")
    reverses = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="reversals"
    )
    idempotency_key = models.CharField(max_length=255)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    objects = TenantQuerySet.as_manager()

    class Meta:
        db_table = "billing_ledger_entry"
        verbose_name = "ledger entry"
        verbose_name_plural = "ledger entries"
        ordering = ["-sequence"]
        constraints = [
            models.UniqueConstraint(
                fields=["org", "idempotency_key"], name="ledger_key_unique_per_org"
            ),
            models.UniqueConstraint(
                fields=["org", "sequence"], name="ledger_sequence_unique_per_org"
            ),
            models.CheckConstraint(condition=~Q(amount_pence=0), name="ledger_amount_not_zero"),
            models.CheckConstraint(
                condition=Q(balance_after_pence__gte=0), name="ledger_balance_after_not_negative"
            ),
            models.CheckConstraint(condition=Q(sequence__gte=1), name="ledger_sequence_positive"),
            models.CheckConstraint(
                condition=~Q(type__in=CREDIT_TYPES) | Q(amount_pence__gt=0),
                name="ledger_credit_types_positive",
            ),
            models.CheckConstraint(
                condition=~Q(type__in=DEBIT_TYPES) | Q(amount_pence__lt=0),
                name="ledger_debit_types_negative",
            ),
            models.CheckConstraint(
                condition=(Q(type=EntryType.REFUND) & Q(reverses__isnull=False))
                | (~Q(type=EntryType.REFUND) & Q(reverses__isnull=True)),
                name="ledger_refund_reverses_an_entry",
            ),
            models.CheckConstraint(
                condition=~Q(reverses=F("id")), name="ledger_entry_not_self_reversing"
            ),
        ]
        indexes = [
            models.Index(fields=["org", "type", "-sequence"], name="ledger_org_type_seq_idx"),
            models.Index(
                fields=["reverses"], name="ledger_reverses_idx", condition=Q(reverses__isnull=False)
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_type_display()} {format_pence(self.amount_pence)}"

    @property
    def amount_formatted(self) -> str:
        return format_pence(self.amount_pence)
