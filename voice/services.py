"""The clinic's AI receptionist: its agent in Vapi, the gate at the start of every call, and the
one function that turns a finished call into a Call row and its charge.

Vapi is never called inside a transaction: an agent row is written `creating` in a short
transaction, Vapi is asked, and the answer is recorded in another. A finished call is billed by
`bill_call`, inside the webhook inbox's transaction, whether its report came from Vapi or the
reconciler found it (voice/reconciliation.py): the inbox row, the Call row (unique by Vapi call
id) and the ledger key `call:<vapi call id>` each make a second delivery a no-op.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from billing import inbox
from billing import services as billing
from billing.models import WebhookEvent
from voice import vapi
from voice.models import Agent, Call
from voxanne.db import fetch_row, insert
from voxanne.errors import Conflict, ServiceUnavailable
from voxanne.models import Organization

logger = logging.getLogger(__name__)

DEFAULT_VOICE = "alloy"
MIN_CALL_SECONDS = 60  # below this much money, a call is not worth starting

# What Vapi says to a caller when we do not take the call (callers never hear why in detail).
SAY_UNKNOWN_NUMBER = "Sorry, this number is not in service. Goodbye."
SAY_NO_AGENT = "Sorry, the clinic cannot take calls just yet. Please call back later. Goodbye."
SAY_ON_HOLD = "Sorry, the clinic cannot take calls right now. Please call back later. Goodbye."
SAY_NO_FUNDS = "Sorry, the clinic cannot take calls right now. Please try again later. Goodbye."


class AgentExists(Conflict):
    default_message = "This clinic already has a receptionist; change it with PATCH instead."
    code = "agent_exists"


class VoiceUnavailable(ServiceUnavailable):
    default_message = (
        "We could not reach our voice provider to set up your receptionist. Please try again."
    )
    code = "voice_unavailable"


# --- Agents --------------------------------------------------------------------------------


@dataclass(frozen=True)
class AgentFields:
    """What a clinic may set on its agent; None keeps the current value (or the default)."""

    name: str | None = None
    first_message: str | None = None
    instructions: str | None = None
    voice: str | None = None

    def given(self) -> dict[str, str]:
        return {k: v for k, v in self.__dict__.items() if v is not None}


def agent_defaults(org: Organization) -> dict[str, str]:
    """A receptionist for the clinic in one click: words from its name and specialty."""
    clinic = org.clinic_name or "the clinic"
    kind = f", a {org.specialty} clinic" if org.specialty else ""
    return {
        "name": f"{org.clinic_name} receptionist" if org.clinic_name else "Receptionist",
        "first_message": f"Hello, thank you for calling {clinic}. How can I help you today?",
        "instructions": (
            f"You are the friendly receptionist of {clinic}{kind}. Help callers book, move or "
            "cancel appointments and answer questions about opening hours and the clinic. Be "
            "warm and brief. Never give medical advice; for an emergency tell the caller to "
            "ring the emergency services. When you cannot help, take a message with the "
            "caller's name and number."
        ),
        "voice": DEFAULT_VOICE,
    }


def _spec(agent: Agent) -> vapi.AssistantSpec:
    return vapi.AssistantSpec(
        name=agent.vapi_name,
        first_message=agent.first_message,
        instructions=agent.instructions,
        voice=agent.voice or DEFAULT_VOICE,
        max_duration_seconds=settings.MAX_CALL_SECONDS,
        metadata={"agent_id": str(agent.pk), "org_id": str(agent.org_id)},
    )


def create_agent(*, org: Organization, fields: AgentFields) -> Agent:
    """The clinic's agent, with its assistant in Vapi: `ready` on return.

    A clinic has one active agent. A retry after a failure (or a crash, or a timeout after Vapi
    created the assistant) resumes the agent left `creating` and finds its assistant by name
    rather than making a second. Raises AgentExists when the clinic's agent is ready (change it
    with `update_agent`), VoiceUnavailable when Vapi cannot be used (the agent stays
    `creating`, with no assistant recorded; nothing the gate would use).
    """
    agent, resumed = _claim_agent(org, fields)
    return _finish(agent, look_up_first=resumed)


def _claim_agent(org: Organization, fields: AgentFields) -> tuple[Agent, bool]:
    with transaction.atomic():
        existing = Agent.objects.select_for_update().filter(org=org, is_active=True).first()
        if existing is None:
            try:
                with transaction.atomic():
                    values = {**agent_defaults(org), **fields.given()}
                    return Agent.objects.create(org=org, **values), False
            except IntegrityError:  # a concurrent request created it first
                existing = Agent.objects.select_for_update().get(org=org, is_active=True)
        if existing.status == Agent.Status.READY:
            raise AgentExists()
        for name, value in fields.given().items():
            setattr(existing, name, value)
        existing.save()
        return existing, True


def _finish(agent: Agent, *, look_up_first: bool) -> Agent:
    """Give a `creating` agent its Vapi assistant and mark it ready. No transaction is open."""
    spec = _spec(agent)
    try:
        assistant_id = vapi.find_assistant(name=spec.name) if look_up_first else None
        if assistant_id:
            vapi.update_assistant(assistant_id=assistant_id, spec=spec)  # the retry's fields
        else:
            assistant_id = vapi.create_assistant(spec)
    except vapi.VapiError as exc:
        logger.warning("agent %s: Vapi failed: %s", agent.pk, exc.detail)
        raise VoiceUnavailable() from exc
    Agent.objects.filter(pk=agent.pk, status=Agent.Status.CREATING).update(
        vapi_assistant_id=assistant_id, status=Agent.Status.READY, updated_at=timezone.now()
    )
    agent.refresh_from_db()
    return agent


def update_agent(*, agent: Agent, fields: AgentFields) -> Agent:
    """Change the agent here and in Vapi. Vapi first: when it fails (VoiceUnavailable)
    nothing changes here either. An agent still `creating` is finished with the new fields."""
    if agent.status == Agent.Status.CREATING:
        for name, value in fields.given().items():
            setattr(agent, name, value)
        agent.save()
        return _finish(agent, look_up_first=True)
    for name, value in fields.given().items():
        setattr(agent, name, value)
    try:
        vapi.update_assistant(assistant_id=agent.vapi_assistant_id, spec=_spec(agent))
    except vapi.VapiError as exc:
        logger.warning("agent %s: Vapi update failed: %s", agent.pk, exc.detail)
        raise VoiceUnavailable(
            "We could not reach our voice provider to change your receptionist. Please try again."
        ) from exc
    agent.save()
    return agent


# --- The gate: may this call start, and for how long? ---------------------------------------


# The two look-ups of a call by its number are SQL, in this one place, run on Django's cursor
# (the system scope: the webhook's). Measured on the 2-core machine (scratch, 150 look-ups,
# 2026-12-01): the ORM's Subquery/Exists annotations of the same query spent 1.9-2.3 ms of
# Python compiling it, two plain ORM queries 1.4-1.6 ms, this 0.11-0.15 ms, where a whole
# end-of-call report cost about 8 ms. The numbers are onboarding's (ManagedPhoneNumber); voice
# sits below onboarding and names its table here rather than importing it.
# Both CTEs are MATERIALIZED: inlined, Postgres copied the COALESCE into each use of org_id
# (three) and planning took 0.47 and 0.62 ms against 0.08 and 0.11 ms of execution; this way
# 0.20 and 0.21 ms (EXPLAIN ANALYZE, 2026-12-01), and the statements 27-37% less time a call
# (in-process, 3,400 webhooks, same window). Both figures are from before statements were
# prepared (voxanne/settings.py); a connection now reuses one plan after a few runs.
# The gate: the clinic whose active number has the call's Vapi number id, else the number
# itself (COALESCE evaluates its second look-up only when the first finds nothing), with its
# ready agent and its wallet.
_GATE_SQL = f"""
WITH line AS MATERIALIZED (
    SELECT COALESCE(
        (SELECT org_id FROM onboarding_managedphonenumber
         WHERE %(phone)s <> '' AND vapi_phone_id = %(phone)s AND status = 'active' LIMIT 1),
        (SELECT org_id FROM onboarding_managedphonenumber
         WHERE %(number)s <> '' AND phone_number = %(number)s AND status = 'active' LIMIT 1)
    ) AS org_id
)
SELECT line.org_id,
    (SELECT a.vapi_assistant_id FROM {Agent._meta.db_table} a
     WHERE a.org_id = line.org_id AND a.is_active AND a.status = %(ready)s LIMIT 1),
    w.balance_pence, w.frozen_at
FROM line LEFT JOIN billing_wallet w ON w.org_id = line.org_id
WHERE line.org_id IS NOT NULL
"""
# The clinic that took a finished call: the one whose active number it came in on, else the
# one whose assistant answered (COALESCE evaluates its second look-up only when the first finds
# nothing); with that agent, and whether the call is already recorded.
_OWNER_SQL = f"""
WITH owner AS MATERIALIZED (
    SELECT COALESCE(
        (SELECT org_id FROM onboarding_managedphonenumber
         WHERE %(phone)s <> '' AND vapi_phone_id = %(phone)s AND status = 'active' LIMIT 1),
        (SELECT org_id FROM {Agent._meta.db_table}
         WHERE %(assistant)s <> '' AND vapi_assistant_id = %(assistant)s LIMIT 1)
    ) AS org_id
)
SELECT owner.org_id,
    (SELECT a.id FROM {Agent._meta.db_table} a
     WHERE %(assistant)s <> '' AND a.org_id = owner.org_id AND a.vapi_assistant_id = %(assistant)s
     LIMIT 1),
    EXISTS (SELECT FROM {Call._meta.db_table} WHERE vapi_call_id = %(call)s)
FROM owner WHERE owner.org_id IS NOT NULL
"""


def seconds_affordable(balance_pence: int) -> int:
    """The longest call a balance pays for: what balance + DEBT_LIMIT_PENCE buys at the rate,
    at most MAX_CALL_SECONDS."""
    funds = balance_pence + settings.DEBT_LIMIT_PENCE
    if funds <= 0:
        return 0
    return min(settings.MAX_CALL_SECONDS, funds * 60 // settings.CALL_RATE_PENCE_PER_MINUTE)


def answer_assistant_request(message: dict) -> dict:
    """Vapi's `assistant-request`: the clinic's assistant and how long the call may last, or
    `{"error": <what Vapi says to the caller>}`. One query; Vapi is not called.

    A call starts only for a clinic with a ready agent, a wallet that is not frozen, a positive
    balance, and at least MIN_CALL_SECONDS of funds; DEBT_LIMIT_PENCE is how far a call that
    started funded may run past zero.
    """
    phone = message.get("phoneNumber") or {}
    call = message.get("call") or {}
    params = {
        "phone": str(phone.get("id") or call.get("phoneNumberId") or ""),
        "number": str(phone.get("number") or ""),
        "ready": Agent.Status.READY,
    }
    row = fetch_row(_GATE_SQL, params)
    if row is None:
        logger.warning("assistant-request for unknown number %(phone)s (%(number)s)", params)
        return {"error": SAY_UNKNOWN_NUMBER}
    org_id, assistant_id, balance, frozen_at = row
    if not assistant_id:
        return {"error": SAY_NO_AGENT}
    if frozen_at is not None:
        return {"error": SAY_ON_HOLD}
    balance = balance or 0
    seconds = seconds_affordable(balance)
    if balance <= 0 or seconds < MIN_CALL_SECONDS:
        logger.info("org %s: call refused, balance %s", org_id, balance)
        return {"error": SAY_NO_FUNDS}
    return {
        "assistantId": assistant_id,
        "assistantOverrides": {
            "maxDurationSeconds": seconds,
            "metadata": {"org_id": str(org_id)},
        },
    }


# --- A finished call: one Call row and one charge ------------------------------------------


def report_event_id(vapi_call_id: str) -> str:
    """The inbox id of a call's report, the same whether Vapi or the reconciler delivers it."""
    return f"end-of-call-report:{vapi_call_id}"


def _when(value) -> datetime | None:
    if not value or not isinstance(value, str):
        return None
    try:
        parsed = parse_datetime(value)
    except ValueError:
        return None
    return parsed if parsed is not None and parsed.tzinfo is not None else None


@dataclass(frozen=True)
class CallFacts:
    """What we keep of a finished Vapi call, from its report or from Vapi's call object."""

    vapi_call_id: str
    phone_id: str
    assistant_id: str
    caller_number: str
    started_at: datetime | None
    ended_at: datetime | None
    ended_reason: str
    summary: str
    recording_url: str

    @classmethod
    def parse(cls, call: dict, report: dict | None = None) -> CallFacts:
        """From a call object, with an end-of-call-report's own fields taking precedence."""
        report = report or {}
        artifact = report.get("artifact") or call.get("artifact") or {}
        analysis = report.get("analysis") or call.get("analysis") or {}
        recording = (artifact.get("recording") or {}).get("mono") or {}
        return cls(
            vapi_call_id=str(call.get("id") or ""),
            phone_id=str(call.get("phoneNumberId") or ""),
            assistant_id=str(call.get("assistantId") or ""),
            caller_number=str((call.get("customer") or {}).get("number") or "")[:32],
            started_at=_when(report.get("startedAt") or call.get("startedAt")),
            ended_at=_when(report.get("endedAt") or call.get("endedAt")),
            ended_reason=str(report.get("endedReason") or call.get("endedReason") or "")[:200],
            summary=str(analysis.get("summary") or report.get("summary") or ""),
            recording_url=str(
                recording.get("combinedUrl")
                or artifact.get("recordingUrl")
                or report.get("recordingUrl")
                or ""
            ),
        )

    @property
    def duration_seconds(self) -> int:
        """endedAt - startedAt, a started second counting as a whole one (0 if not both)."""
        if not (self.started_at and self.ended_at) or self.ended_at <= self.started_at:
            return 0
        return math.ceil((self.ended_at - self.started_at).total_seconds())


def call_cost_pence(duration_seconds: int) -> int:
    """ceil(duration_seconds x rate / 60): the only rounding of a call's price."""
    return -(-duration_seconds * settings.CALL_RATE_PENCE_PER_MINUTE // 60)


def _owner(facts: CallFacts) -> tuple | None:
    """(org id, id of the agent that answered or None, already recorded) of the clinic that took
    the call (by its number, else by its assistant): one query. None: no clinic."""
    params = {"phone": facts.phone_id, "assistant": facts.assistant_id, "call": facts.vapi_call_id}
    return fetch_row(_OWNER_SQL, params)


def bill_call(facts: CallFacts) -> str:
    """Record a finished call and charge for it, inside the inbox's transaction.

    Returns why nothing was recorded ("" when it was). The charge is written even when it
    takes the balance below zero: the call has happened.
    """
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("bill_call() joins the webhook inbox's transaction")
    if not facts.vapi_call_id:
        return "the report has no call id"
    owner = _owner(facts)
    if owner is None:
        logger.error("call %s: no clinic owns phone number %s", facts.vapi_call_id, facts.phone_id)
        return f"no clinic owns phone number {facts.phone_id or '(none)'}"
    org_id, agent_id, recorded = owner
    if recorded:
        return "the call is already recorded"
    duration = facts.duration_seconds
    cost = call_cost_pence(duration)
    charge = None
    if cost:
        charge = billing.charge_call(
            org=org_id,
            vapi_call_id=facts.vapi_call_id,
            amount_pence=cost,
            description=f"Call from {facts.caller_number or 'an unknown number'}, {duration} s",
        ).entry
    insert(
        Call(
            org_id=org_id,
            agent_id=agent_id,
            vapi_call_id=facts.vapi_call_id,
            direction=Call.Direction.INBOUND,
            caller_number=facts.caller_number,
            status="ended",
            started_at=facts.started_at or facts.ended_at or timezone.now(),
            ended_at=facts.ended_at,
            duration_seconds=duration,
            ended_reason=facts.ended_reason,
            summary=facts.summary,
            recording_url=facts.recording_url,
            cost_pence=cost,
            charge=charge,
        )
    )
    return ""


def receive_call_report(*, facts: CallFacts, payload: dict) -> inbox.Handled:
    """Store a finished call's report in the inbox and bill it, in one transaction (a
    redelivery, or the reconciler racing it, is a `duplicate`). Database errors propagate."""
    return inbox.receive(
        provider=WebhookEvent.Provider.VAPI,
        event_id=report_event_id(facts.vapi_call_id),
        type="end-of-call-report",
        payload=payload,
        apply=lambda: bill_call(facts),
    )


# --- The sandbox: a pretend call under `make run` ------------------------------------------


class SandboxOnly(Conflict):
    default_message = "Sandbox calls need TELEPHONY_SANDBOX on (make run)."
    code = "sandbox_only"


@dataclass(frozen=True)
class SandboxCall:
    answer: dict  # the double's account: assistantRequest, the call, the report's answer
    call: Call | None
    balance_pence: int


def place_sandbox_call(*, org: Organization, seconds: int, caller: str) -> SandboxCall:
    """Ring the clinic's number through the sandbox's Vapi double, which asks our webhook
    (assistant-request), ends the call after `seconds` and sends the end-of-call-report.
    Raises SandboxOnly outside the sandbox, ValueError when the clinic has no number, and
    vapi.VapiError when the double cannot be asked."""
    from voxanne.tenancy import system_context

    if not settings.TELEPHONY_SANDBOX:
        raise SandboxOnly()
    with system_context("sandbox call"):
        line = org.managed_phone_numbers.filter(status="active").first()
    if line is None:
        raise ValueError(f"{org} has no phone number yet")
    answer = vapi.place_sandbox_call(
        number=line.phone_number, duration_seconds=seconds, caller=caller
    )
    with system_context("sandbox call"):
        call = Call.objects.filter(vapi_call_id=answer["call"]["id"]).first()
        balance = billing.wallet_for(org).balance_pence
    return SandboxCall(answer=answer, call=call, balance_pence=balance)
