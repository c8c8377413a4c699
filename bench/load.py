"""Load: CLINICS clinics at once through the whole wizard against gunicorn, then the money checks.

    python bench/load.py [CLINICS]      (`make bench` runs it; default 200)

All CLINICS clinics sign up at once (asyncio + httpx), then each, concurrently, sends the
wizard's events, is topped up (support's credit service), provisions its number (Twilio and
Vapi doubles fail 5% of purchase and import calls at random; a failed clinic clicks again, up to
three times), reports payment_success, completes onboarding, reads status and wallet. Gunicorn
runs as gunicorn.conf.py says (threaded workers, one process per CPU) on a database of its own.

Sign-ups hash a password (PBKDF2, about 0.24 s of CPU each, the real hasher in the server) and
must not queue other requests: one more clinic, on a connection of its own, reads
GET /api/onboarding/status one request after another, idle first and then while the 200
sign-ups are in flight (issue 16: "while 200 clinics sign up at once"); the target is a p95
within STATUS_TARGET x the idle p95.

Then the invariants, which make the script exit non-zero when broken:
- `reconcile_wallets` is clean, and no provisioning attempt is left unfinished;
- every clinic's balance == its top-ups - 1000 x numbers it owns (+ bonuses);
- the Twilio double holds exactly one number per clinic that has one (none for the others), and
  Vapi imported exactly those;
- a month later (simulate_month: day by simulated day, `now=` given, no sleeping; a real
  Celery worker beside gunicorn). Of every 10 numbers one clinic has spent its wallet
  (DRAINED_EVERY), four turn auto-recharge on (PUT, with the card their Checkout top-up saved;
  in every 40 numbers one card is declined and one wants authentication), five do not. Every
  clinic but the drained pays a Checkout top-up at the Stripe double, then receives calls for
  CALL_DAYS (end-of-call reports POSTed to Vapi's webhook with its secret, REPEATED of them
  twice) until it has spent SPEND_PENCE; a debit below the threshold has the worker charge the
  saved card off-session at the double, whose signed webhooks reach gunicorn twice each.
  RENTAL_RUNS overlapping rental passes run each day, to the end of grace; reconcile_topups
  once at the end. Then: the wallets still equal their ledgers; each call is charged exactly
  once; each payment that succeeded at the double (Checkout sessions, off-session
  PaymentIntents) is credited exactly once under its key, and nothing else is; the reconciler
  had nothing left to credit; the refused clinics' auto-recharge is paused and their owners
  emailed; every funded number's month 2 is charged exactly once; every drained clinic's
  number is released and held neither at Twilio nor at Vapi, with no rent charged.
Prints requests/s and p50/p95/p99 latency per endpoint, next to /healthz under the same load,
and one line of what the month did.

The worker takes the tasks of REDIS_URL's default queue: no other worker may consume that
Redis database while this runs.
"""

from __future__ import annotations

import asyncio
import os
import random
import sys
import time
from collections import Counter, defaultdict
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


async def sign_up(http, rec: Recorder, i: int, signed_up: list[int]) -> dict:
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
    return signup.json()


async def clinic_journey(http, rec: Recorder, i: int, body: dict, top_up) -> dict:
    """The wizard after sign-up, as the clinic's browser goes through it."""
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
        signups, _ = await asyncio.gather(
            asyncio.gather(*(sign_up(http, rec, i, signed_up) for i in range(CLINICS))),
            read_status_until(probe, status, "during", lambda: len(signed_up) >= CLINICS),
        )
        results = await asyncio.gather(
            *(clinic_journey(http, rec, i, body, top_up) for i, body in enumerate(signups))
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
CALL_DAYS = 30  # days of calls before the numbers' month ends
REPEATED = 0.10  # share of end-of-call reports Vapi delivers a second time
VAPI_SECRET = "bench-load-vapi-webhook-secret"
CHECKOUT_PENCE = 2500  # every clinic but the drained pays one Checkout top-up first
THRESHOLD_PENCE, RECHARGE_PENCE = 2000, 2500  # auto-recharge: below 20 pounds, add 25
# What each kind of clinic spends on calls in the month (the last call overshoots by under
# 4 pounds). From 15 + 25 pounds, plain clinics stay above 20; recharging ones cross it once on
# calls and once more at the rent; refused ones cross it once and can still pay the rent.
SPEND_PENCE = {"plain": 1800, "recharge": 4000, "decline": 2300, "authentication_required": 2300}
# The Stripe double's refusing card outcomes, and the code we record for each.
REFUSED = {"decline": "card_declined", "authentication_required": "authentication_required"}


def month_role(i: int) -> str:
    """Of every 40 numbers: 4 drained, 14 on auto-recharge, 1 on auto-recharge whose card is
    declined, 1 whose bank wants authentication, 20 plain."""
    if i % DRAINED_EVERY == 0:
        return "drained"
    if i % 40 in (1, 2):
        return list(REFUSED)[i % 40 - 1]
    return "recharge" if i % 10 <= 4 else "plain"


def fund_clinics(base: str, stripe, clinics: dict[str, dict]) -> list[str]:
    """Each clinic but the drained pays a Checkout top-up on Stripe's page (its signed webhook
    to gunicorn credits it and saves the card); the auto-recharge ones turn it on with PUT,
    and the refused ones' cards are switched at the double. Returns what went wrong."""
    from concurrent.futures import ThreadPoolExecutor

    import httpx

    def fund(org_id: str) -> str | None:
        clinic = clinics[org_id]
        headers = {"Authorization": f"Bearer {clinic['token']}"}
        answer = http.post(
            "/api/billing/wallet/topup", json={"amount_pence": CHECKOUT_PENCE}, headers=headers
        )
        if answer.status_code != 201:
            return f"clinic {org_id}: top-up answered {answer.status_code} {answer.text[:200]}"
        session_id = answer.json()["url"].rsplit("/", 1)[-1]
        stripe.pay(session_id)
        if clinic["role"] == "plain":
            return None
        answer = http.put(
            "/api/billing/wallet/auto-recharge",
            json={
                "enabled": True,
                "threshold_pence": THRESHOLD_PENCE,
                "amount_pence": RECHARGE_PENCE,
            },
            headers=headers,
        )
        if answer.status_code != 200:
            return f"clinic {org_id}: auto-recharge answered {answer.status_code} {answer.text}"
        if clinic["role"] in REFUSED:
            with stripe.lock:
                intent = stripe.payment_intents[stripe.sessions[session_id]["payment_intent"]]
            stripe.set_card(intent["payment_method"], clinic["role"])
        return None

    funded = [org_id for org_id, clinic in clinics.items() if clinic["role"] != "drained"]
    with httpx.Client(base_url=base, timeout=60) as http, ThreadPoolExecutor(8) as pool:
        return [problem for problem in pool.map(fund, funded) if problem]


def stamp(at) -> str:
    return at.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def plan_calls(clinics: dict[str, dict], first_day) -> tuple[dict[int, list], dict]:
    """Each funded clinic's calls on random days of CALL_DAYS from `first_day`, until they
    cost its SPEND_PENCE, REPEATED of them reported again (the same day or the next). Returns
    the end-of-call reports to send on each day, and each call's (org, seconds)."""
    import uuid
    from datetime import timedelta

    from django.conf import settings

    chance = random.Random(17)
    rate = settings.CALL_RATE_PENCE_PER_MINUTE
    days: dict[int, list[dict]] = defaultdict(list)
    calls: dict[str, tuple[str, int]] = {}
    for org_id, clinic in clinics.items():
        spent, spend = 0, SPEND_PENCE.get(clinic["role"], 0)
        while spent < spend:
            seconds = chance.randint(20, 400)
            spent += -(-seconds * rate // 60)
            day = chance.randrange(CALL_DAYS)
            ended = first_day + timedelta(days=day, seconds=chance.randint(0, 20 * 3600))
            call_id = str(uuid.uuid4())
            calls[call_id] = (org_id, seconds)
            report = {
                "type": "end-of-call-report",
                "endedReason": "customer-ended-call",
                "startedAt": stamp(ended - timedelta(seconds=seconds)),
                "endedAt": stamp(ended),
                "call": {
                    "id": call_id,
                    "phoneNumberId": clinic["phone_id"],
                    "customer": {"number": "+447700900123"},
                    "status": "ended",
                },
                "analysis": {"summary": "Booked a check-up."},
            }
            days[day].append(report)
            if chance.random() < REPEATED:
                days[min(day + chance.randint(0, 1), CALL_DAYS - 1)].append(report)
    for reports in days.values():
        chance.shuffle(reports)
    return days, calls


async def deliver_reports(base: str, reports: list[dict]) -> Counter:
    """POST each report to Vapi's webhook with its secret, CONNECTIONS at a time (a closed
    loop); counts the answers' outcomes (the HTTP status when it is not a 200)."""
    import httpx

    outcomes: Counter = Counter()
    left = iter(reports)
    limits = httpx.Limits(max_connections=CONNECTIONS, max_keepalive_connections=CONNECTIONS)
    async with httpx.AsyncClient(base_url=base, timeout=60, limits=limits) as http:

        async def one_connection() -> None:
            for report in left:
                answer = await http.post(
                    "/api/voice/vapi/webhook",
                    json={"message": report},
                    headers={"X-Vapi-Secret": VAPI_SECRET},
                )
                ok = answer.status_code == 200
                outcomes[answer.json()["outcome"] if ok else answer.status_code] += 1

        await asyncio.gather(*(one_connection() for _ in range(CONNECTIONS)))
    return outcomes


def worker_idle(broker, timeout: float = 300) -> bool:
    """Wait until the Celery worker has taken every queued task and no recharge is in flight:
    three quiet looks in a row, since a task just taken and not yet at Stripe is in neither
    for a moment. False if that never happens within `timeout` seconds."""
    from billing.models import RechargeAttempt, RechargeState
    from voxanne.celery import app
    from voxanne.tenancy import system_context

    queue = app.conf.task_default_queue
    quiet, deadline = 0, time.monotonic() + timeout
    while quiet < 3:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
        with system_context("bench month wait"):
            flying = RechargeAttempt.objects.filter(state=RechargeState.IN_FLIGHT).exists()
        # kombu's Redis transport keeps tasks taken but not yet acknowledged in "unacked".
        busy = flying or broker.llen(queue) or broker.hlen("unacked")
        quiet = 0 if busy else quiet + 1
    return True


def simulate_month(base: str, twilio, vapi, stripe) -> tuple[list[str], dict]:
    """The month after the wizard, day by simulated day (`now=`, no sleeping), with a real
    Celery worker: every funded clinic tops up by Checkout and receives calls (end-of-call
    reports to gunicorn, some twice), the auto-recharge ones are recharged off-session
    through the Stripe double (its signed webhooks to gunicorn, each delivered twice), a few
    refused; each day the rental passes (RENTAL_RUNS at once; nothing is due before the
    anniversary) until the end of grace; reconcile_topups once at the end. Returns broken
    promises and what happened."""
    import tempfile
    import threading
    from datetime import timedelta

    import redis
    from django.conf import settings
    from django.db import connection

    from bench.harness import celery_worker
    from billing.models import EntryType
    from billing.services import debit, wallet_for
    from billing.topups import reconcile_topups
    from onboarding.models import ManagedPhoneNumber
    from onboarding.rental import run_rental_pass
    from voxanne.auth import tokens_for
    from voxanne.tenancy import system_context

    # This process releases numbers, sends the grace emails (kept in memory) and reconciles.
    doubles = {**twilio.env(), **vapi.env(), **stripe.env()}
    for name, value in doubles.items():
        setattr(settings, name, value)
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    stripe.webhook_url = f"{base}/api/billing/stripe/webhook"
    stripe.duplicate(2)
    stripe.checkout_emits_payment_intent_events = True  # as Stripe does; ignored by us
    with system_context("bench month"):
        numbers = list(
            ManagedPhoneNumber.objects.filter(status="active").select_related("org__owner")
        )
        clinics = {
            str(n.org_id): {
                "role": month_role(i),
                "phone_id": n.vapi_phone_id,
                "token": tokens_for(n.org.owner)["access"],
            }
            for i, n in enumerate(numbers)
        }
        drained = [org_id for org_id, c in clinics.items() if c["role"] == "drained"]
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

    problems: list[str] = []
    began = time.perf_counter()
    start = first_due - timedelta(days=CALL_DAYS) + timedelta(hours=1)
    reports, calls = plan_calls(clinics, start)
    outcomes: Counter = Counter()
    broker = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    log = Path(tempfile.mkstemp(prefix="voxanne-bench-load-worker-", suffix=".log")[1])
    env = {**os.environ, **doubles, "EMAIL_BACKEND": settings.EMAIL_BACKEND}
    with celery_worker(env, log):
        problems += fund_clinics(base, stripe, clinics)
        day, days = start, 0
        while day <= last_grace:
            outcomes += asyncio.run(deliver_reports(base, reports.get(days, [])))
            if not worker_idle(broker):
                problems.append(f"the worker did not finish day {days}'s tasks (log: {log})")
                break
            passes(day)
            day += timedelta(days=1)
            days += 1
        if not worker_idle(broker):
            problems.append(f"the worker did not finish the rent's tasks (log: {log})")
    if not problems:
        log.unlink()
    with system_context("bench month reconcile"):
        reconciled = reconcile_topups()
    repaired = reconciled.repaired + reconciled.recharges_repaired
    if repaired:
        problems.append(f"reconcile_topups had to credit {len(repaired)} payments: {repaired[:5]}")
    if set(outcomes) - {"processed", "duplicate"}:
        problems.append(f"end-of-call reports answered {dict(outcomes)}")
    found, summary = check_month(clinics, numbers, calls, twilio, vapi, stripe)
    summary = {
        "calls": len(calls),
        "reports_delivered": sum(outcomes.values()),
        **summary,
        "simulated_days": days,
        "rental_passes": days * RENTAL_RUNS,
        "seconds": round(time.perf_counter() - began),
    }
    return problems + found, summary


def check_month(clinics, numbers, calls, twilio, vapi, stripe) -> tuple[list[str], dict]:
    """After the month: the wallets equal their ledgers, each call is charged once, each
    payment that succeeded at the double is credited once, the refused clinics' auto-recharge
    is paused (and they were emailed), the funded numbers were renewed once and the drained
    ones released everywhere. Returns broken promises and the month's counts."""
    import io

    from django.conf import settings
    from django.core.management import call_command
    from django.db.models import Count, Q, Sum

    from billing.models import AutoRecharge, EntryType, LedgerEntry, RechargeAttempt, Wallet
    from onboarding.models import ManagedPhoneNumber
    from voxanne.tenancy import system_context

    def by_key(entries) -> dict[str, tuple[int, int]]:
        """(how many entries, their sum) per idempotency key."""
        grouped = entries.values("idempotency_key").annotate(n=Count("id"), s=Sum("amount_pence"))
        return {g["idempotency_key"]: (g["n"], g["s"]) for g in grouped}

    problems: list[str] = []
    with system_context("bench month check"):
        out = io.StringIO()
        try:
            call_command("reconcile_wallets", stdout=out, stderr=out)
        except SystemExit as exit_:
            if exit_.code:
                problems.append(
                    f"reconcile_wallets failed after the month: {out.getvalue()[-300:]}"
                )
        charged = by_key(LedgerEntry.objects.filter(type=EntryType.CALL_CHARGE))
        credited = by_key(
            LedgerEntry.objects.filter(
                Q(idempotency_key__startswith="topup:") | Q(idempotency_key__startswith="recharge:")
            )
        )
        rentals = {
            str(o): n
            for o, n in LedgerEntry.objects.filter(type=EntryType.NUMBER_RENTAL)
            .values("org_id")
            .annotate(n=Sum("amount_pence"))
            .values_list("org_id", "n")
        }
        rules = {str(r.org_id): r for r in AutoRecharge.objects.all()}
        attempts = defaultdict(list)
        for attempt in RechargeAttempt.objects.all():
            attempts[str(attempt.org_id)].append(attempt)
        state = {str(n.org_id): n for n in ManagedPhoneNumber.objects.all()}
        balances = {str(o): b for o, b in Wallet.objects.values_list("org_id", "balance_pence")}

    rate = settings.CALL_RATE_PENCE_PER_MINUTE
    for call_id, (_, seconds) in calls.items():
        cost = -(-seconds * rate // 60)  # ceil(seconds x rate / 60)
        expected = (1, -cost)  # one charge of it
        if charged.get(f"call:{call_id}") != expected:
            problems.append(
                f"call {call_id}: (charges, pence) {charged.get(f'call:{call_id}')} != {expected}"
            )
    if len(charged) != len(calls):
        problems.append(f"{len(charged)} calls charged, {len(calls)} made")

    with stripe.lock:
        paid = {
            f"topup:{s['id']}": s["amount_total"]
            for s in stripe.sessions.values()
            if s["payment_status"] == "paid"
        }
        recharged = {
            f"recharge:{i['id']}": i["amount_received"]
            for i in stripe.payment_intents.values()
            if i["off_session"] and i["status"] == "succeeded"
        }
    for key, amount in {**paid, **recharged}.items():
        if credited.get(key) != (1, amount):
            problems.append(
                f"Stripe payment {key} of {amount}: (credits, pence) {credited.get(key)}"
            )
    for key in credited.keys() - paid.keys() - recharged.keys():
        problems.append(f"{key} credited {credited[key]}, but Stripe has no such payment")

    declined = 0
    for org_id, clinic in clinics.items():
        role, tries = clinic["role"], attempts[org_id]
        paused = getattr(rules.get(org_id), "paused_reason", "")
        if role in REFUSED:
            failed = [a for a in tries if a.state == "failed" and a.error_code == REFUSED[role]]
            declined += len(failed)
            if not (paused.startswith(REFUSED[role]) and rules[org_id].enabled):
                problems.append(f"clinic {org_id}: {role}, yet auto-recharge is {paused or 'on'!r}")
            if not failed or any(a.owner_notified_at is None for a in failed):
                problems.append(f"clinic {org_id}: {role}, no failed attempt emailed to the owner")
        elif role == "recharge":
            if paused or not any(a.state == "succeeded" for a in tries):
                problems.append(f"clinic {org_id}: never recharged (paused: {paused!r})")
        elif tries:
            problems.append(
                f"clinic {org_id}: {role} without auto-recharge, yet {len(tries)} attempts"
            )

    imported = set(vapi.imported_numbers())
    held = {n["phone_number"] for n in twilio.owned_numbers()}
    for number in numbers:
        org = str(number.org_id)
        now_state = state[org]
        if clinics[org]["role"] == "drained":
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
        "call_charges": len(charged),
        "checkout_topups": len(paid),
        "recharges_ok": len(recharged),
        "recharges_declined": declined,
        "numbers": len(numbers),
        "renewed": sum(1 for n in state.values() if n.months_paid == 2),
        "released": sum(1 for n in state.values() if n.status == "released"),
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

        from sandbox.stripe import StripeDouble

        twilio, vapi = flaky_doubles()
        stripe = StripeDouble().start()
        try:
            env = {
                **os.environ,
                **twilio.env(),
                **vapi.env(),
                **stripe.env(),
                "VAPI_WEBHOOK_SECRET": VAPI_SECRET,
                "AUTH_THROTTLE_RATE": "100000/second",
            }
            with gunicorn(env) as server:
                rec, results, elapsed, health, health_s, status = asyncio.run(
                    drive(server.url, top_up)
                )
                problems = check_invariants(results, twilio, vapi)
                month_problems, month = simulate_month(server.url, twilio, vapi, stripe)
                problems += month_problems
        finally:
            stripe.stop()
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
