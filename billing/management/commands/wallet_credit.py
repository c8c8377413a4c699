"""Add a top-up to a clinic's wallet from the command line (support, tests)."""

from __future__ import annotations

import uuid

from django.core.management.base import BaseCommand, CommandError

from billing import services
from billing.models import SUPPORT_DESCRIPTIONS, EntryType
from voxanne.errors import IdempotencyKeyReused
from voxanne.models import Organization
from voxanne.tenancy import system_context


def _org_id(value: str) -> str:
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise CommandError(f"{value!r} is not an organization id (a UUID).") from None


def _pence(value: str) -> int:
    try:
        pence = int(value)
    except ValueError:
        raise CommandError(f"{value!r} is not a whole number of pence.") from None
    if pence <= 0:
        raise CommandError("The amount must be a positive number of pence.")
    return pence


class Command(BaseCommand):
    help = "Add a top-up of AMOUNT_PENCE to the wallet of ORG_ID."

    def add_arguments(self, parser):
        parser.add_argument("org_id")
        parser.add_argument("amount_pence")
        parser.add_argument(
            "--reason",
            required=True,
            help='why (a staff-only note on the ledger entry; the clinic reads "Top-up")',
        )
        parser.add_argument(
            "--idempotency-key",
            help="repeat a run safely: the same key adds the credit once (default: a new key)",
        )

    def handle(self, *args, org_id: str, amount_pence: str, reason: str, **options):
        org_id, pence = _org_id(org_id), _pence(amount_pence)
        reason = reason.strip()
        if not reason:
            raise CommandError("--reason must not be empty.")
        key = options["idempotency_key"] or f"command:{uuid.uuid4()}"
        with system_context("wallet_credit command"):
            if not Organization.objects.filter(pk=org_id).exists():
                raise CommandError(f"No organization with id {org_id}.")
            try:
                posting = services.credit(
                    org=org_id,
                    amount_pence=pence,
                    type=EntryType.TOPUP,
                    idempotency_key=key,
                    description=SUPPORT_DESCRIPTIONS[EntryType.TOPUP],
                    internal_note=reason,
                )
            except IdempotencyKeyReused:
                raise CommandError(
                    "This --idempotency-key was already used for a different credit."
                ) from None
            balance = services.wallet_for(org_id).balance_formatted
        verb = "Added" if posting.created else "Already added (same key, nothing written):"
        self.stdout.write(
            f"{verb} {posting.entry.amount_formatted} to org {org_id} "
            f"(entry {posting.entry.pk}); balance {balance}."
        )
