"""A real Celery worker process for tests: a queue of its own, its output in a file."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@contextmanager
def running_celery_worker(*, env: dict[str, str], log_path: Path) -> Iterator[str]:
    """A `celery -A voxanne worker` (solo pool) with `env`, writing stdout and stderr to
    `log_path`; yields the name of the queue it alone consumes. Stopped on exit."""
    queue = f"test-{uuid.uuid4().hex[:8]}"
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
                "--queues",
                queue,
                "--without-heartbeat",
                "--without-gossip",
                "--without-mingle",
                "--loglevel",
                "INFO",
            ],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            yield queue
        finally:
            worker.terminate()
            try:
                worker.wait(timeout=10)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait(timeout=10)
