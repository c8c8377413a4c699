"""A real worker process for the crash tests: provisions one org's number, as a request would,
and dies at the step it is told to.

    python tests/onboarding/provision_worker.py <org id> <step>

It dies with exit status 137 (what a SIGKILL leaves), from this test code only: wrapped
provider functions (onboarding/telephony.py, voice/vapi.py) die just before or just after the
real call, and a database execute wrapper (Django's `connection.execute_wrapper`) dies just
after the statement that records a step. The environment points it at the test database and
the doubles.
"""

from __future__ import annotations

import functools
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "voxanne.settings")

# step -> (when, boundary module, function): die around that provider call.
AROUND_PROVIDER_CALL = {
    "after_hold": ("before", "onboarding.telephony", "create_subaccount"),
    "subaccount_unrecorded": ("after", "onboarding.telephony", "create_subaccount"),
    "after_subaccount": ("before", "onboarding.telephony", "search_local_numbers"),
    "purchase_unrecorded": ("after", "onboarding.telephony", "buy_number"),
    "after_purchase": ("before", "voice.vapi", "import_twilio_number"),
    "import_unrecorded": ("after", "voice.vapi", "import_twilio_number"),
    "before_refund": ("after", "onboarding.telephony", "release_number"),  # undone, not refunded
}
# step -> the statement after which to die.
AFTER_STATEMENT = {
    # The UPDATE that records the import (autocommit: it is committed).
    "after_import": lambda sql, params: sql.startswith("UPDATE") and '"imported_at"' in sql,
    # The attempt marked succeeded inside the settle transaction, before its COMMIT.
    "before_settle": lambda sql, params: (
        sql.startswith('UPDATE "onboarding_provisioningattempt"') and "succeeded" in params
    ),
}


def die() -> None:
    sys.stdout.flush()
    os._exit(137)


def die_around(when: str, module_name: str, function_name: str) -> None:
    import importlib

    module = importlib.import_module(module_name)
    real = getattr(module, function_name)

    @functools.wraps(real)
    def wrapper(*args, **kwargs):
        if when == "before":
            die()
        result = real(*args, **kwargs)
        die()
        return result

    setattr(module, function_name, wrapper)


def die_after_statement(matches):
    def wrapper(execute, sql, params, many, context):
        result = execute(sql, params, many, context)
        if matches(sql, params or ()):
            die()
        return result

    return wrapper


def main(org_id: str, step: str) -> int:
    import contextlib

    import django

    django.setup()
    from django.db import connection

    from onboarding.provisioning import provision_number
    from voxanne.errors import ApiError
    from voxanne.models import Organization
    from voxanne.tenancy import org_context, system_context

    statements = contextlib.nullcontext()
    if step in AROUND_PROVIDER_CALL:
        die_around(*AROUND_PROVIDER_CALL[step])
    elif step in AFTER_STATEMENT:
        statements = connection.execute_wrapper(die_after_statement(AFTER_STATEMENT[step]))
    else:
        raise SystemExit(f"unknown step {step!r}")

    with system_context("crash test worker"):
        org = Organization.objects.get(pk=org_id)
    with org_context(org.pk), statements:
        try:
            result = provision_number(org=org)
        except ApiError as exc:
            print(f"error {exc.status_code} {exc.message}")
            return 1
    print(f"ok {result.phone_number}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
