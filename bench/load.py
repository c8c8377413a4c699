"""Load: CLINICS clinics at once through the whole wizard against gunicorn, then the money checks.

    python bench/load.py [CLINICS]      (`make bench` runs it; default 200)

Each clinic, concurrently (asyncio + httpx): signs up, sends the wizard's events, is topped up
(support's credit service: clinics have no top-up endpoint), provisions its number (Twilio and
Vapi doubles fail 5% of purchase and import calls at random; a failed clinic clicks again, up to
three times), reports payment_success, completes onboarding, reads status and wallet. Gunicorn
runs as gunicorn.conf.py says (threaded workers, one process per CPU) on a database of its own.

Sign-ups hash a password (PBKDF2, about 0.24 s of CPU each, the real hasher in the server) and
must not queue other requests: one more clinic, on a connection of its own, reads
GET /api/onboarding/status one request after another, idle first and then while the 200
sign-ups are in flight; the target is a p95 within STATUS_TARGET x the idle p95.

Then the invariants, which make the script exit non-zero when broken:
- `reconcile_wallets` is clean, and no provisioning attempt is left unfinished;
- every clinic's balance == its top-ups - 1000 x numbers it owns (+ bonuses);
- the Twilio double holds exactly one number per clinic that has one (none for the others), and
  Vapi imported exactly those;
- a month later (simulate_month: RENTAL_RUNS overlapping rental passes a day, from the
  anniversary to the end of grace, one clinic in DRAINED_EVERY having spent its wallet): every
  funded number's month 2 is charged exactly once, every drained clinic's number is released and
  held neither at Twilio nor at Vapi with no rent charged, and the wallets still equal their
  ledgers.
Prints requests/s and p50/p95/p99 latency per endpoint, next to /healthz under the same load.
"""

from __future__ import annotations

import asyncio
import os
import random
import sys
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.harness import bench_database, django_setup, gunicorn, percentile  # noqa: E402

CLINICS = 200
CONNECTIONS = 32
STATUS_TARGET = 10  # status p95 during the sign-ups, at most this many times its idle p95
IDLE_STATUS_READS = 100
TOPUP_PENCE = 2500
FAILURE_RATE = 0.05
PROVISION_TRIES = 3
WIZARD_EVENTS = [
    ("started", 0),
    ("clinic_named", 1),
    ("specialty_chosen", 2),
    ("payment_viewed", 3),
]


def flaky_doubles():
    """Twilio and Vapi doubles whose buy and import calls fail at random, FAILURE_RATE each."""
    from sandbox.server import Reply
    from sandbox.twilio import SERVER_ERROR, TwilioDouble
    from sandbox.vapi import VapiDouble

    chance = random.Random(7)
    vapi_down = Reply(502, {"message": "Bad gateway", "statusCode": 502})

    class FlakyTwilio(TwilioDouble):
        def _switches(self, step):
            if step == "buy" and chance.random() < FAILURE_RATE:
                with self.lock:
                    self.calls[step] += 1
                return SERVER_ERROR
            return super()._switches(step)

    class FlakyVapi(VapiDouble):
        def _switches(self, step):
            if step == "import" and chance.random() < FAILURE_RATE:
                with self.lock:
                    self.calls[step] += 1
                return vapi_down
            return super()._switches(step)

    twilio = FlakyTwilio().start()
    return twilio, FlakyVapi(twilio=twilio).start()


class Recorder:
    def __init__(self) -> None:
        self.latencies: dict[str, list[float]] = defaultdict(list)
        self.statuses: dict[str, dict[int, int]] = defaultdict(lambda: defaultdict(int))

    async def call(self, http, label: str, method: str, path: str, **kwargs):
        began = time.perf_counter()
        response = await http.request(method, path, **kwargs)
        self.latencies[label].append(time.perf_counter() - began)
        self.statuses[label][response.status_code] += 1
        if response.status_code >= 500 and label != "POST /api/onboarding/provision-number":
            raise RuntimeError(f"{label} answered {response.status_code}: {response.text[:200]}")
        return response


async def clinic_journey(http, rec: Recorder, i: int, top_up, signed_up: list[int]) -> dict:
    signup = await rec.call(
        http,
        "POST /api/auth/signup",
        "POST",
        "/api/auth/signup",
        json={
            "email": f"load{i}@clinic.test",
            "password": "load-test-password-1234",
            "clinic_name": f"Load Clinic {i}",
        },
    )
    signed_up.append(i)
    assert signup.status_code == 201, signup.text
    body = signup.json()
    headers = {"Authorization": f"Bearer {body['access']}"}
    for name, step in WIZARD_EVENTS:
        await rec.call(
            http,
            "POST /api/onboarding/event",
            "POST",
            "/api/onboarding/event",
            json={"event_name": name, "step_index": step, "session_id": f"s{i}"},
            headers=headers,
        )
    await asyncio.to_thread(top_up, body["org_id"])
    number = None
    for attempt in range(PROVISION_TRIES):
        answer = await rec.call(
            http,
            "POST /api/onboarding/provision-number",
            "POST",
            "/api/onboarding/provision-number",
            json={},
            headers={**headers, "Idempotency-Key": f"load-{i}-{attempt}"},
        )
        assert "error" in answer.json() or answer.status_code == 200, answer.text
        if answer.status_code == 200:
            number = answer.json()["phoneNumber"]
            break
    if number:
        await rec.call(
            http,
            "POST /api/onboarding/event",
            "POST",
            "/api/onboarding/event",
            json={"event_name": "payment_success", "step_index": 3},
            headers=headers,
        )
    complete = await rec.call(
        http,
        "POST /api/onboarding/complete",
        "POST",
        "/api/onboarding/complete",
        json={"clinic_name": f"Load Clinic {i}", "specialty": "dental"},
        headers=headers,
    )
    assert complete.status_code == 200, complete.text
    status = await rec.call(
        http, "GET /api/onboarding/status", "GET", "/api/onboarding/status", headers=headers
    )
    assert status.json()["needs_onboarding"] is False
    await rec.call(http, "GET /api/billing/wallet", "GET", "/api/billing/wallet", headers=headers)
    return {"org_id": body["org_id"], "number": number}


async def health_baseline(http, rec: Recorder, requests: int) -> None:
    """`requests` GET /healthz, CONNECTIONS at a time, each sent when one comes back.

    A closed loop (as wrk measures): thousands of requests queued at once would time the
    client's own connection pool, not the server.
    """
    left = iter(range(requests))

    async def one_connection() -> None:
        for _ in left:
            await rec.call(http, "GET /healthz", "GET", "/healthz")

    await asyncio.gather(*(one_connection() for _ in range(CONNECTIONS)))


async def probe_clinic(base: str):
    """A clinic of its own reading its status on one connection (a clinic in the wizard)."""
    import httpx

    probe = httpx.AsyncClient(base_url=base, timeout=httpx.Timeout(120))
    signup = await probe.post(
        "/api/auth/signup",
        json={"email": "probe@clinic.test", "password": "load-test-password-1234"},
    )
    assert signup.status_code == 201, signup.text
    probe.headers["Authorization"] = f"Bearer {signup.json()['access']}"
    return probe


async def read_status_until(probe, rec: Recorder, label: str, done) -> None:
    while not done():
        answer = await rec.call(probe, label, "GET", "/api/onboarding/status")
        assert answer.status_code == 200, answer.text


async def drive(base: str, top_up) -> tuple[Recorder, list[dict], float, Recorder, float, Recorder]:
    import httpx

    # All clinics are in flight at once; they share CONNECTIONS sockets, as clinics behind a
    # load balancer share its upstream connections (gunicorn's sync workers take one at a time).
    limits = httpx.Limits(max_connections=CONNECTIONS, max_keepalive_connections=CONNECTIONS)
    timeout = httpx.Timeout(120, pool=None)
    async with httpx.AsyncClient(base_url=base, timeout=timeout, limits=limits) as http:
        await health_baseline(http, Recorder(), 50)  # warm-up, not measured
        health = Recorder()
        began = time.perf_counter()
        await health_baseline(http, health, CLINICS * 5)
        health_s = time.perf_counter() - began
        probe, status = await probe_clinic(base), Recorder()
        for recorder in [Recorder()] * 10 + [status] * IDLE_STATUS_READS:  # warm-up, then idle
            await recorder.call(probe, "idle", "GET", "/api/onboarding/status")
        rec = Recorder()
        signed_up: list[int] = []
        began = time.perf_counter()
        results, _ = await asyncio.gather(
            asyncio.gather(
                *(clinic_journey(http, rec, i, top_up, signed_up) for i in range(CLINICS))
            ),
            read_status_until(probe, status, "during", lambda: len(signed_up) >= CLINICS),
        )
        elapsed = time.perf_counter() - began
        await probe.aclose()
    return rec, list(results), elapsed, health, health_s, status


def check_invariants(results: list[dict], twilio, vapi) -> list[str]:
    """Every broken promise, as a sentence (empty when all hold)."""
    import io

    from django.core.management import call_command
    from django.db.models import Sum

    from billing.models import EntryType, LedgerEntry, Wallet
    from onboarding.models import (
        AttemptState,
        ManagedPhoneNumber,
        ProvisioningAttempt,
        TwilioSubaccount,
    )
    from onboarding.reconciler import reconcile_stuck_attempts
    from voxanne.tenancy import system_context

    problems = []
    with system_context("bench load check"):
        reconcile_stuck_attempts()
        out = io.StringIO()
        try:
            call_command("reconcile_wallets", stdout=out, stderr=out)
        except SystemExit as exit_:
            if exit_.code:
                problems.append(f"reconcile_wallets failed: {out.getvalue()[-500:]}")
        unfinished = ProvisioningAttempt.objects.exclude(
            state__in=[AttemptState.SUCCEEDED, AttemptState.FAILED]
        ).count()
        if unfinished:
            problems.append(f"{unfinished} provisioning attempts left unfinished")
        balances = {str(o): b for o, b in Wallet.objects.values_list("org_id", "balance_pence")}
        credits = {
            str(o): total
            for o, total in LedgerEntry.objects.filter(type__in=[EntryType.TOPUP, EntryType.BONUS])
            .values("org_id")
            .annotate(s=Sum("amount_pence"))
            .values_list("org_id", "s")
        }
        owned = defaultdict(list)
        for org_id, sid, subaccount, vapi_id in ManagedPhoneNumber.objects.filter(
            status=ManagedPhoneNumber.Status.ACTIVE
        ).values_list("org_id", "twilio_number_sid", "subaccount_sid", "vapi_phone_id"):
            owned[str(org_id)].append((sid, subaccount, vapi_id))
        subaccounts = {
            str(o): sid for o, sid in TwilioSubaccount.objects.values_list("org_id", "account_sid")
        }
    imported = vapi.imported_numbers()
    for result in results:
        org = result["org_id"]
        numbers = owned.get(org, [])
        expected = credits.get(org, 0) - 1000 * len(numbers)
        if balances.get(org) != expected:
            problems.append(f"clinic {org}: balance {balances.get(org)} != {expected}")
        if len(numbers) != (1 if result["number"] else 0):
            problems.append(f"clinic {org}: owns {len(numbers)} numbers, answer {result['number']}")
        at_twilio = twilio.owned_numbers(subaccounts[org]) if org in subaccounts else []
        if len(at_twilio) != len(numbers):
            problems.append(f"clinic {org}: Twilio holds {len(at_twilio)}, we store {len(numbers)}")
    if len(imported) != sum(len(v) for v in owned.values()):
        problems.append(
            f"Vapi holds {len(imported)} imports, we store {sum(map(len, owned.values()))}"
        )
    return problems


DRAINED_EVERY = 10  # one clinic in ten has spent its wallet when its number's month ends
RENTAL_RUNS = 4  # overlapping rental passes on each simulated day


def simulate_month(results: list[dict], twilio, vapi) -> tuple[list[str], dict]:
    """A month later: the rental passes (RENTAL_RUNS at once, each simulated day from the
    anniversary to the end of grace) renew every funded number once and release the drained
    clinics' numbers at Twilio and Vapi. Returns broken promises and what happened."""
    import io
    import threading
    from datetime import timedelta

    from django.conf import settings
    from django.core.management import call_command
    from django.db import connection
    from django.db.models import Sum

    from billing.models import EntryType, LedgerEntry, Wallet
    from billing.services import debit, wallet_for
    from onboarding.models import ManagedPhoneNumber
    from onboarding.rental import run_rental_pass
    from voxanne.tenancy import system_context

    # This process releases numbers and sends the grace emails itself (kept in memory).
    for name, value in {**twilio.env(), **vapi.env()}.items():
        setattr(settings, name, value)
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    problems: list[str] = []
    with system_context("bench month"):
        numbers = list(ManagedPhoneNumber.objects.filter(status="active"))
        drained = {str(n.org_id) for i, n in enumerate(numbers) if i % DRAINED_EVERY == 0}
        for org_id in drained:
            debit(
                org=org_id,
                amount_pence=wallet_for(org_id).balance_pence,
                type=EntryType.ADJUSTMENT,
                idempotency_key="bench-spent",
            )
        first_due = min(n.paid_until for n in numbers)
        last_grace = max(n.paid_until for n in numbers) + timedelta(days=8)

    def passes(now) -> None:
        def one() -> None:
            try:
                with system_context("bench rental pass"):
                    run_rental_pass(now=now)
            finally:
                connection.close()

        runs = [threading.Thread(target=one) for _ in range(RENTAL_RUNS)]
        for run in runs:
            run.start()
        for run in runs:
            run.join(300)

    day = first_due + timedelta(hours=1)
    days = 0
    while day <= last_grace:
        passes(day)
        day += timedelta(days=1)
        days += 1

    with system_context("bench month check"):
        out = io.StringIO()
        try:
            call_command("reconcile_wallets", stdout=out, stderr=out)
        except SystemExit as exit_:
            if exit_.code:
                problems.append(
                    f"reconcile_wallets failed after the month: {out.getvalue()[-300:]}"
                )
        rentals = {
            str(o): n
            for o, n in LedgerEntry.objects.filter(type=EntryType.NUMBER_RENTAL)
            .values("org_id")
            .annotate(n=Sum("amount_pence"))
            .values_list("org_id", "n")
        }
        state = {str(n.org_id): n for n in ManagedPhoneNumber.objects.all()}
        balances = {str(o): b for o, b in Wallet.objects.values_list("org_id", "balance_pence")}
    imported = set(vapi.imported_numbers())
    held = {n["phone_number"] for n in twilio.owned_numbers()}
    for number in numbers:
        org = str(number.org_id)
        now_state = state[org]
        if org in drained:
            if now_state.status != "released" or now_state.provider_released_at is None:
                problems.append(f"clinic {org}: unpaid number {number.phone_number} not released")
            if rentals.get(org):
                problems.append(f"clinic {org}: drained, yet charged rent {rentals[org]}")
        else:
            if rentals.get(org) != -1000 or now_state.months_paid != 2:
                problems.append(f"clinic {org}: rent {rentals.get(org)} for month 2, not -1000")
            if balances.get(org, 0) < 0:
                problems.append(f"clinic {org}: balance {balances[org]} below zero")
        released = now_state.status == "released"
        if released and (number.phone_number in held or number.phone_number in imported):
            problems.append(f"released {number.phone_number} still held at Twilio or Vapi")
        if not released and number.phone_number not in held:
            problems.append(f"active {number.phone_number} not held at Twilio")
    summary = {
        "numbers": len(numbers),
        "renewed": len(numbers) - len(drained),
        "released": len(drained),
        "simulated_days": days,
        "rental_passes": days * RENTAL_RUNS,
    }
    return problems, summary


def main() -> int:
    from bench.table import Row, report

    with bench_database("voxanne_bench_load"):
        django_setup()
        from billing.models import EntryType
        from billing.services import credit
        from voxanne.tenancy import system_context

        def top_up(org_id: str) -> None:
            with system_context("bench top-up"):
                credit(
                    org=org_id,
                    amount_pence=TOPUP_PENCE,
                    type=EntryType.TOPUP,
                    idempotency_key="load-topup",
                )

        twilio, vapi = flaky_doubles()
        try:
            env = {
                **os.environ,
                **twilio.env(),
                **vapi.env(),
                "AUTH_THROTTLE_RATE": "100000/second",
            }
            with gunicorn(env) as server:
                rec, results, elapsed, health, health_s, status = asyncio.run(
                    drive(server.url, top_up)
                )
            problems = check_invariants(results, twilio, vapi)
            month_problems, month = simulate_month(results, twilio, vapi)
            problems += month_problems
        finally:
            vapi.stop()
            twilio.stop()

    requests = sum(len(v) for v in rec.latencies.values())
    numbers = sum(1 for r in results if r["number"])
    baseline = health.latencies["GET /healthz"]
    label = f"ms /healthz, same {CONNECTIONS} connections"
    rows = [
        Row(
            figure=f"load: requests/s, {CLINICS} clinics through the wizard (gunicorn.conf.py)",
            value=requests / elapsed,
            unit="req/s",
            baseline=len(baseline) / health_s,
            baseline_label=f"req/s /healthz, same {CONNECTIONS} connections",
        )
    ]
    for endpoint in sorted(rec.latencies):
        samples = rec.latencies[endpoint]
        for q in (50, 95, 99):
            rows.append(
                Row(
                    figure=f"load: {endpoint} p{q} (n={len(samples)})",
                    value=percentile(samples, q),
                    unit="ms",
                    baseline=percentile(baseline, q),
                    baseline_label=label,
                )
            )
    idle, during = status.latencies["idle"], status.latencies["during"]
    status_ratio = percentile(during, 95) / percentile(idle, 95)
    rows.append(
        Row(
            figure=f"load: GET /api/onboarding/status p95 while {CLINICS} sign up (n={len(during)})",
            value=percentile(during, 95),
            unit="ms",
            baseline=percentile(idle, 95),
            baseline_label=f"ms the same reads idle (n={len(idle)}); target <= {STATUS_TARGET}x",
        )
    )
    statuses = {k: dict(v) for k, v in rec.statuses.items()}
    report(
        f"bench/load.py ({CLINICS} clinics, {numbers} numbers bought, "
        f"{CLINICS - numbers} gave up after {PROVISION_TRIES} failed tries; "
        f"invariants {'hold' if not problems else 'BROKEN'})",
        rows,
    )
    print(f"statuses per endpoint: {statuses}")
    verdict = "met" if status_ratio <= STATUS_TARGET else "MISSED"
    print(
        f"status p95 during sign-ups / idle = {status_ratio:.1f}x "
        f"(target <= {STATUS_TARGET}x: {verdict})"
    )
    print(f"a month later: {month}")
    for problem in problems[:20]:
        print(f"INVARIANT BROKEN: {problem}")
    return 1 if problems else 0


if __name__ == "__main__":
    if len(sys.argv) > 1:
        CLINICS = int(sys.argv[1])
    sys.exit(main())
