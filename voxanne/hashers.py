"""Password hashing that gives way to every other request.

Django's PBKDF2 costs about 0.24 s of CPU per sign-up or sign-in on the 2-core machine, and
OpenSSL computes it without the GIL, so a burst of 200 sign-ups keeps both cores busy for
about 24 s. At the kernel's equal shares, every other request (a clinic reading its status)
then waits behind the hashes. Here the hashing runs on a few threads of each process whose
nice value is raised (Linux lets a thread lower its own priority, never raise it back), so the
kernel runs other requests first and gives the hashes what is left. Hashes, the algorithm and
the stored format are Django's own; only where they run changes.

Measured in bench/load.py (200 clinics signing up at once over 32 connections, 2-core machine,
GET /api/onboarding/status p95 against its idle p95, 2026-12-01): 193x with Django's hasher and
16 threads; 2.1x, 2.8x, 2.7x and 2.3x with these threads and 32 (20x once, in a slow spell of
the shared machine). Why a pool, not a semaphore around the hash: the priority belongs to the
thread that computes, and a request thread cannot take back the priority it gave up.
"""

from __future__ import annotations

import functools
import os
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

from django.contrib.auth.hashers import PBKDF2PasswordHasher

# The kernel's weight for nice 10 is 110 against 1,024 for nice 0: a request that wants the CPU
# runs first, hashes get about a tenth of a busy core (so sign-in never starves under load) and
# every idle core. Lower priority than this buys the reads nothing more (bench/load.py).
HASHING_NICENESS = 10


def _lower_priority() -> None:
    """Lower this thread's priority to HASHING_NICENESS, never raise it (a process started
    nicer than that stays as it is: raising it back is refused without privileges)."""
    if sys.platform != "linux":  # a Linux thread has a nice value of its own (its task id)
        return
    thread = threading.get_native_id()
    current = os.getpriority(os.PRIO_PROCESS, thread)
    os.setpriority(os.PRIO_PROCESS, thread, max(current, HASHING_NICENESS))


@functools.cache
def _pool(pid: int) -> ThreadPoolExecutor:
    """The process' hashing threads (keyed by pid: a forked child makes its own)."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return ThreadPoolExecutor(
        max_workers=cpus or 1, thread_name_prefix="password-hash", initializer=_lower_priority
    )


class BackgroundPBKDF2PasswordHasher(PBKDF2PasswordHasher):
    """Django's PBKDF2-SHA256 (same algorithm name, so stored hashes need no upgrade), computed
    on the low-priority threads. Encoding is all that costs: verify() and harden_runtime()
    call it too."""

    def encode(self, password, salt, iterations=None):
        compute = super().encode
        return _pool(os.getpid()).submit(compute, password, salt, iterations).result()
