"""Place a pretend call to a clinic's number in the sandbox and show what it was billed."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from billing.models import format_pence
from voice import services, vapi
from voxanne.models import Organization
from voxanne.tenancy import system_context


class Command(BaseCommand):
    help = (
        "Ring the clinic's number through the sandbox's Vapi double (TELEPHONY_SANDBOX, with "
        "VAPI_BASE_URL pointing at the double): our webhook answers assistant-request, the "
        "double ends the call and sends its end-of-call-report; prints the Call and balance."
    )

    def add_arguments(self, parser):
        parser.add_argument("org", help="the clinic's id or its exact name")
        parser.add_argument("--seconds", type=int, default=90, help="how long the call lasts")
        parser.add_argument("--caller", default="+447700900123")

    def handle(self, *args, org: str, seconds: int, caller: str, **options):
        with system_context("sandbox_call command"):
            found = Organization.objects.filter(clinic_name=org).first()
            if found is None and len(org) == 36:
                found = Organization.objects.filter(pk=org).first()
        if found is None:
            raise CommandError(f"No clinic matches {org!r}.")
        try:
            placed = services.place_sandbox_call(org=found, seconds=seconds, caller=caller)
        except (services.SandboxOnly, ValueError) as exc:
            raise CommandError(str(exc)) from None
        except vapi.VapiError as exc:
            raise CommandError(f"The Vapi double could not place the call: {exc.detail}") from None
        self.stdout.write(f"assistant-request -> {placed.answer['assistantRequest']}")
        if placed.call is None:
            self.stdout.write(
                f"No call was billed (ended: {placed.answer['call'].get('endedReason')}; "
                f"report: {placed.answer['report']})."
            )
            return
        call = placed.call
        self.stdout.write(
            f"Call {call.pk}: {call.duration_seconds} s from {call.caller_number}, billed "
            f"{format_pence(call.cost_pence)}; {found} now has "
            f"{format_pence(placed.balance_pence)}."
        )
