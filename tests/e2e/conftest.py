"""The browser tests need Debian's chromium and chromium-driver. `make test` installs them when
it can (root with apt); otherwise these tests are skipped with the reason, except where the
browser is required (REQUIRE_BROWSER=1, as .ci/run sets): there its absence fails them."""

from __future__ import annotations

import os
import shutil

import pytest

MISSING = (
    "Chromium or chromedriver is not installed, so the admin browser tests did not run "
    "(install them: apt-get install chromium chromium-driver)."
)


def browser_binaries() -> tuple[str, str] | None:
    """(chromium, chromedriver) as found on PATH, or None when either is missing."""
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    return (chromium, driver) if chromium and driver else None


def pytest_runtest_setup(item):
    # Before any fixture (the live server, the database) is set up.
    if "browser" not in item.fixturenames or browser_binaries():
        return
    if os.environ.get("REQUIRE_BROWSER", "").strip() == "1":
        pytest.fail(f"REQUIRE_BROWSER=1: {MISSING}", pytrace=False)
    pytest.skip(MISSING)


def pytest_terminal_summary(terminalreporter):
    if browser_binaries() is None and terminalreporter.stats.get("skipped"):
        terminalreporter.write_sep("!", "BROWSER TESTS SKIPPED", yellow=True, bold=True)
        terminalreporter.write_line(MISSING)
