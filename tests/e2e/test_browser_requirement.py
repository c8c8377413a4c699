"""Without Chromium the browser tests are skipped loudly on a developer's machine, and fail
where the browser is required (CI sets REQUIRE_BROWSER=1)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from django.conf import settings

BROWSER_TESTS = "tests/e2e/test_admin_refund_in_browser.py"


def pytest_without_chromium(tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    """The browser tests in a pytest of their own whose PATH holds no chromium."""
    child_env = {**os.environ, "PATH": str(tmp_path), **env}  # an empty directory
    child_env.pop("REQUIRE_BROWSER", None)
    child_env.update(env)
    child_env["TEST_DATABASE_NAME"] = f"{settings.DATABASES['default']['NAME']}_nobrowser"
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:randomly", BROWSER_TESTS],
        cwd=Path(settings.BASE_DIR),
        env=child_env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_without_chromium_the_browser_tests_are_skipped_with_the_reason(tmp_path):
    run = pytest_without_chromium(tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "2 skipped" in run.stdout, run.stdout
    assert "apt-get install chromium chromium-driver" in run.stdout, run.stdout


def test_where_the_browser_is_required_its_absence_fails_them(tmp_path):
    run = pytest_without_chromium(tmp_path, REQUIRE_BROWSER="1")
    assert run.returncode == 1, run.stdout + run.stderr
    assert "2 error" in run.stdout or "2 failed" in run.stdout, run.stdout
    assert "REQUIRE_BROWSER" in run.stdout, run.stdout
