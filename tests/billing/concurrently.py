"""Run a callable in N real threads at once, each on its own database connection."""

from __future__ import annotations

import threading
from collections.abc import Callable

from django.db import connection

from voxanne.tenancy import system_context


def run_at_once(work: Callable[[int], object], threads: int) -> list[object]:
    """Start `threads` threads behind a barrier; return each one's result or exception."""
    barrier = threading.Barrier(threads)
    results: list[object] = [None] * threads

    def run(index: int) -> None:
        try:
            with system_context("test thread"):
                barrier.wait(timeout=30)
                results[index] = work(index)
        except Exception as exc:
            results[index] = exc
        finally:
            connection.close()

    workers = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
    assert not any(worker.is_alive() for worker in workers), "a thread hung"
    return results
