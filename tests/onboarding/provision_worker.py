"""A real worker process for the crash tests: provisions one org's number, as a request would.

    python tests/onboarding/provision_worker.py <org id> [<area code>]

Run with VOXANNE_FAULT_AT=<step> it dies (exit 137) at that step; the environment points it at
the test database and the doubles.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "voxanne.settings")


def main(org_id: str, area_code: str | None) -> int:
    import django

    django.setup()
    from onboarding.provisioning import provision_number
    from voxanne.errors import ApiError
    from voxanne.models import Organization
    from voxanne.tenancy import org_context, system_context

    with system_context("crash test worker"):
        org = Organization.objects.get(pk=org_id)
    with org_context(org.pk):
        try:
            result = provision_number(org=org, area_code=area_code)
        except ApiError as exc:
            print(f"error {exc.status_code} {exc.message}")
            return 1
    print(f"ok {result.phone_number}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else None))
