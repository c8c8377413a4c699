"""What a clinic is told when its wallet runs low: one email per crossing below its
`low_balance_pence` line (text + HTML), re-armed when the balance is back above the line,
and none while an auto-recharge is in flight.

billing/services.py notices a debit that leaves a balance low and calls `balance_dropped`
once the transaction has committed; the email itself is sent by a Celery task (never inside a
transaction, never in the request that spent the money). Claim, then send: a crossing is
claimed on the wallet row (services.claim_low_balance_alert) before the email goes out, and a
send that fails gives the claim back.
"""

from __future__ import annotations

import logging
import uuid

from django.conf import settings

from billing import services
from billing.models import format_pence
from voxanne.emails import templated_email
from voxanne.models import Organization

logger = logging.getLogger(__name__)


def balance_dropped(org_id: uuid.UUID | str) -> None:
    """After the commit of a debit that left the balance low: queue the check (robust: a
    broker that is down costs an email, never money)."""
    from billing.tasks import balance_dropped as task

    task.apply_async(args=[str(org_id)], retry=False)


def send_low_balance_email(org_id: uuid.UUID | str) -> bool:
    """Email the owner that the balance is below its line, once per crossing. Returns whether
    this call sent it. Run in the system context, outside any transaction."""
    from billing.recharge import in_flight

    if in_flight(org_id):  # the wallet is being refilled: no alarm
        return False
    wallet = services.claim_low_balance_alert(org=org_id)
    if wallet is None:
        return False
    org = Organization.objects.select_related("owner").get(pk=org_id)
    recipient = getattr(org.owner, "email", "")
    if not recipient:
        return False
    context = {
        "clinic": org.clinic_name or "your clinic",
        "balance": format_pence(wallet.balance_pence),
        "line": format_pence(wallet.low_balance_pence),
        "topup_url": f"{settings.APP_BASE_URL}/billing",
    }
    message = templated_email(
        "emails/billing/low_balance",
        context,
        subject=f"Your Voxanne wallet is low ({context['balance']})",
        to=[recipient],
    )
    try:
        message.send()
    except Exception:
        logger.exception("could not send the low-balance email", extra={"org_id": str(org_id)})
        services.release_low_balance_alert(org=org_id)
        return False
    return True
