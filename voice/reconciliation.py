"""The reconciler: Vapi sends each end-of-call-report once and never retries, so every 15
minutes we list Vapi's calls and bill each ended call whose report never arrived.

It also keeps our clinics' numbers routed to us: no assistant attached and our webhook as the
server, so every inbound call asks the gate first (numbers imported before that, or changed
in Vapi's dashboard).

Billing goes through the same inbox event as the report (`end-of-call-report:<call id>`), so a
report arriving while the reconciler bills the same call is a duplicate, whichever is first.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone

from voice import services, vapi
from voice.models import Call
from voxanne.models import Organization
from voxanne.tenancy import system_context

logger = logging.getLogger(__name__)

CHUNK = 500


@dataclass
class CallReconciliation:
    numbers_rerouted: int = 0
    calls_seen: int = 0
    calls_billed: list[str] = field(default_factory=list)  # reports we had to make up for
    calls_already_billed: int = 0

    def summary(self) -> str:
        return (
            f"{self.calls_seen} ended calls seen, {len(self.calls_billed)} billed by the "
            f"reconciler, {self.calls_already_billed} already billed; "
            f"{self.numbers_rerouted} numbers routed back to our webhook"
        )


def _our_numbers() -> dict[str, str]:
    """Vapi phone id -> org id of every active number we manage."""
    rows = Organization.objects.filter(managed_phone_numbers__status="active").values_list(
        "managed_phone_numbers__vapi_phone_id", "id"
    )
    return {phone_id: str(org_id) for phone_id, org_id in rows if phone_id}


def _needs_routing(row: dict, server: dict) -> bool:
    current = row.get("server") or {}
    return bool(
        row.get("assistantId")
        or row.get("squadId")
        or row.get("workflowId")
        or current.get("url") != server["url"]
        or (current.get("headers") or {}) != (server.get("headers") or {})
    )


def route_numbers(ours: dict[str, str]) -> int:
    """Point every number of ours that is not routed to our webhook back at it."""
    server = vapi.webhook_server()
    rerouted = 0
    for row in vapi.list_numbers():
        if row.get("id") in ours and _needs_routing(row, server):
            vapi.route_number_to_server(phone_id=row["id"], server=server)
            logger.warning("vapi number %s was not routed to our webhook; fixed", row["id"])
            rerouted += 1
    return rerouted


def reconcile_calls(*, now: datetime | None = None) -> CallReconciliation:
    """Bill every ended call of our numbers in the lookback window that has no Call row.

    Raises vapi.VapiError when Vapi cannot be listed (the next run tries again); a database
    error propagates the same way. Safe to run concurrently with itself and with the webhook.
    """
    now = now or timezone.now()
    since = now - timedelta(hours=settings.RECONCILE_CALLS_LOOKBACK_HOURS)
    result = CallReconciliation()
    with system_context("reconcile calls"):
        ours = _our_numbers()
    if not ours:
        return result
    result.numbers_rerouted = route_numbers(ours)
    ended = [
        call
        for call in vapi.list_calls(created_since=since)
        if call.get("phoneNumberId") in ours and call.get("status") == "ended" and call.get("id")
    ]
    result.calls_seen = len(ended)
    for start in range(0, len(ended), CHUNK):
        chunk = ended[start : start + CHUNK]
        with system_context("reconcile calls"):
            known = set(
                Call.objects.filter(vapi_call_id__in=[c["id"] for c in chunk]).values_list(
                    "vapi_call_id", flat=True
                )
            )
        for call in chunk:
            if call["id"] in known:
                result.calls_already_billed += 1
                continue
            facts = services.CallFacts.parse(call)
            with system_context("reconcile calls"):
                handled = services.receive_call_report(
                    facts=facts, payload={"source": "reconciler", "call": call}
                )
            if handled.outcome == "processed":
                result.calls_billed.append(facts.vapi_call_id)
                logger.warning(
                    "call %s had no end-of-call-report; billed by the reconciler",
                    facts.vapi_call_id,
                )
            else:
                result.calls_already_billed += 1
    return result
