"""What every benchmark needs: a database of its own, Django set up on it, clinics, a gunicorn
(and, for the ones whose work goes through Celery, a worker), client connections to drive it,
and the books checked afterwards.

with bench_database("voxanne_bench_x") as admin_url:   # DATABASE_URL now points at it
    django_setup()                                    # migrate, fast password hashing
    clinics = sign_up_clinics(20)
    with gunicorn(env) as server:
        health_s, health = healthz_baseline(server.url, 1000, clients=8)
        took, latencies = closed_loop(server.url, [("POST", path, {"json": {}})], clients=8)
    assert not wallets_off_their_ledger()
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
BENCH_PASSWORD = "bench-password-1234"
HEALTHZ = ("GET", "/healthz", {})


@contextmanager
def bench_database(name: str) -> Iterator[str]:
    """Create database `name` next to DATABASE_URL's, point DATABASE_URL at it, drop it after.

    Yields the original (admin) URL.
    """
    import psycopg

    url = os.environ.get("DATABASE_URL")
    if not url:
        sys.exit("DATABASE_URL is not set: run `make bench`.")
    parts = urlsplit(url)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {name}")
    os.environ["DATABASE_URL"] = urlunsplit(
        (parts.scheme, parts.netloc, f"/{name}", parts.query, "")
    )
    try:
        yield url
    finally:
        if "django" in sys.modules:
            from django.db import connections

            connections.close_all()
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        os.environ["DATABASE_URL"] = url


def django_setup(*, migrate: bool = True) -> None:
    """Set Django up on the bench database; set-up logins use a fast password hasher."""
    import logging

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "voxanne.settings")
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command

    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    logging.getLogger("httpx").setLevel(logging.WARNING)
    if migrate:
        call_command("migrate", verbosity=0)


def sign_up_clinics(count: int, *, prefix: str = "bench") -> list:
    """`count` clinics signed up as the API signs them up: owner `<prefix><i>@clinic.test`,
    clinic "<Prefix> Clinic <i>". Returns the sign-ups (`.organization`, `.user`)."""
    from voxanne import services

    return [
        services.sign_up(
            email=f"{prefix}{i}@clinic.test",
            password=BENCH_PASSWORD,
            clinic_name=f"{prefix.capitalize()} Clinic {i}",
        )
        for i in range(count)
    ]


def wallets_off_their_ledger() -> list:
    """The clinics whose wallet balance is not the sum of their ledger entries (none, when the
    books hold)."""
    from django.db.models import Sum

    from billing.models import LedgerEntry, Wallet
    from voxanne.tenancy import system_context

    with system_context("bench check"):
        sums = dict(
            LedgerEntry.objects.values("org_id")
            .annotate(s=Sum("amount_pence"))
            .values_list("org_id", "s")
        )
        wallets = Wallet.objects.values_list("org_id", "balance_pence")
        return [org for org, balance in wallets if sums.get(org, 0) != balance]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass(frozen=True)
class Server:
    url: str
    process: subprocess.Popen

    def worker_pids(self) -> list[int]:
        pid = self.process.pid
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


@contextmanager
def gunicorn(
    env: dict[str, str],
    *,
    workers: int | None = None,
    timeout: int | None = None,
    app: str = "voxanne.wsgi:application",
) -> Iterator[Server]:
    """A gunicorn serving `app` with `env` (its DATABASE_URL, providers...); stops it after.

    Started from the repository root, so it reads gunicorn.conf.py as production does;
    `workers` and `timeout` override the file's values when given.
    """
    import httpx

    port = free_port()
    overrides = []
    if workers is not None:
        overrides += ["--workers", str(workers)]
    if timeout is not None:
        overrides += ["--timeout", str(timeout)]
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            app,
            "--bind",
            f"127.0.0.1:{port}",
            *overrides,
        ],
        cwd=ROOT,
        env={"LOG_LEVEL": "WARNING", "DJANGO_DEBUG": "0", **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or server.poll() is not None:
                raise RuntimeError("gunicorn did not start")
            time.sleep(0.2)
        yield Server(url=base, process=server)
    finally:
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()


@contextmanager
def celery_worker(env: dict[str, str], log_path: Path) -> Iterator[subprocess.Popen]:
    """A `celery -A voxanne worker` (solo pool) on the default queue with `env`, as production
    runs it; its output goes to `log_path`. Stopped after."""
    with log_path.open("w") as log:
        worker = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "voxanne",
                "worker",
                "--pool",
                "solo",
                "--without-heartbeat",
                "--without-gossip",
                "--without-mingle",
                "--loglevel",
                "WARNING",
            ],
            cwd=ROOT,
            env={"LOG_LEVEL": "WARNING", "DJANGO_DEBUG": "0", **env},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            yield worker
        finally:
            worker.terminate()
            try:
                worker.wait(10)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait(10)


def closed_loop(
    base: str,
    requests: list[tuple[str, str, dict]],
    *,
    clients: int,
    answers: list | None = None,
) -> tuple[float, list[float]]:
    """Send `requests` (method, path, and `json`, `content` or `headers`), in order, over
    `clients` keep-alive connections, each sending its next request when its last one is
    answered (as wrk measures). Returns the seconds it took and each request's latency, in the
    requests' order; fills `answers` (a list as long as `requests`), when given, with each
    decoded JSON answer. Exits the
    script if any answer is not a 200.

    The standard library's http.client, not httpx: the client shares the 2 cores with the
    server, and httpx spent 4.2 ms of CPU per request there (bench/calls.py, 2026-12-01: 0.63
    of a core at 150 req/s), a third of the machine taken from the server it measures.
    """
    import http.client
    import json

    address = urlsplit(base)
    latencies = [0.0] * len(requests)
    failures: list[str] = []
    lock = threading.Lock()
    pending = iter(range(len(requests)))
    start = threading.Barrier(clients + 1)

    def client() -> None:
        http_ = http.client.HTTPConnection(address.hostname, address.port, timeout=60)
        start.wait()
        try:
            while True:
                with lock:
                    index = next(pending, None)
                if index is None:
                    return
                method, path, kwargs = requests[index]
                headers = dict(kwargs.get("headers") or {})
                body = kwargs.get("content")
                if "json" in kwargs:
                    body = json.dumps(kwargs["json"]).encode()
                    headers["Content-Type"] = "application/json"
                began = time.perf_counter()
                http_.request(method, path, body=body, headers=headers)
                response = http_.getresponse()
                data = response.read()
                latencies[index] = time.perf_counter() - began
                if response.status != 200:
                    with lock:
                        failures.append(f"{method} {path} {response.status} {data[:200]!r}")
                elif answers is not None:
                    answers[index] = json.loads(data)
        finally:
            http_.close()

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    start.wait()
    began = time.perf_counter()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - began
    if failures:
        sys.exit(f"{len(failures)} requests failed, e.g. {failures[0]}")
    return elapsed, latencies


def healthz_baseline(base: str, requests: int, *, clients: int) -> tuple[float, list[float]]:
    """The usual baseline: `requests` GET /healthz through `clients` connections to the same
    server, after 200 to warm it up (imports, connections). As `closed_loop` returns."""
    closed_loop(base, [HEALTHZ] * 200, clients=clients)
    return closed_loop(base, [HEALTHZ] * requests, clients=clients)


def percentile(samples: list[float], q: int) -> float:
    """The q-th percentile of `samples` in milliseconds (samples in seconds)."""
    import statistics

    if len(samples) < 2:
        return samples[0] * 1000 if samples else 0.0
    return statistics.quantiles(samples, n=100)[q - 1] * 1000
