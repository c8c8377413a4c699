"""Production's password hasher: Django's PBKDF2, computed on low-priority threads.

The suite hashes with MD5 for speed (conftest); these tests put production's list back.
"""

from __future__ import annotations

import hashlib
import importlib
import multiprocessing
import os
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.contrib.auth.hashers import (
    PBKDF2PasswordHasher,
    check_password,
    get_hasher,
    make_password,
)

from voxanne import hashers

PRODUCTION_HASHERS = importlib.import_module("voxanne.settings").PASSWORD_HASHERS


@pytest.fixture
def production_hashers(settings):
    settings.PASSWORD_HASHERS = PRODUCTION_HASHERS


def _priority() -> int:
    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())


def test_production_hashes_are_djangos_pbkdf2_both_ways(production_hashers):
    assert isinstance(get_hasher(), hashers.BackgroundPBKDF2PasswordHasher)
    ours = make_password("correct horse battery")
    assert ours.startswith("pbkdf2_sha256$")
    assert PBKDF2PasswordHasher().verify("correct horse battery", ours)

    stock_hasher = PBKDF2PasswordHasher()
    stock = stock_hasher.encode("correct horse battery", stock_hasher.salt())
    upgraded = []
    assert check_password("correct horse battery", stock, setter=upgraded.append)
    assert not check_password("wrong horse", stock)
    assert upgraded == []  # same algorithm, iterations and salt size: nothing to rehash


class _RecordingHasher(hashers.BackgroundPBKDF2PasswordHasher):
    """Records the priority of the thread that computes PBKDF2 (Django's pbkdf2() calls
    `digest()` on that thread to name the hash)."""

    seen: list[tuple[str, int]] = []

    @staticmethod
    def digest():
        _RecordingHasher.seen.append((threading.current_thread().name, _priority()))
        return hashlib.sha256()


@pytest.mark.skipif(sys.platform != "linux", reason="per-thread nice values are Linux's")
def test_pbkdf2_runs_on_a_lower_priority_thread_and_the_caller_keeps_its_own():
    before = _priority()
    hasher = _RecordingHasher()
    encoded = hasher.encode("correct horse battery", "somesalt123")

    assert hasher.verify("correct horse battery", encoded)
    assert _priority() == before
    names = {name for name, _ in _RecordingHasher.seen}
    assert names and all(name.startswith("password-hash") for name in names)
    assert {priority for _, priority in _RecordingHasher.seen} == {
        max(before, hashers.HASHING_NICENESS)
    }


def test_many_requests_hashing_at_once_all_get_their_own_answer():
    hasher = hashers.BackgroundPBKDF2PasswordHasher()
    hasher.iterations = 1_000
    with ThreadPoolExecutor(16) as requests:
        encoded = list(requests.map(lambda i: hasher.encode(f"pw{i}", f"salt{i:08d}"), range(64)))
    assert all(hasher.verify(f"pw{i}", e) for i, e in enumerate(encoded))
    assert len(set(encoded)) == 64


def _hash_in_child(queue) -> None:
    hasher = hashers.BackgroundPBKDF2PasswordHasher()
    hasher.iterations = 1_000
    queue.put(hasher.encode("child", "childsalt123"))


@pytest.mark.skipif(sys.platform != "linux", reason="per-thread nice values are Linux's")
def test_a_process_started_nicer_than_the_hashing_threads_keeps_its_niceness_and_hashes():
    """Started at nice 15 (an operator's choice), the hashing threads stay at 15: setting 10
    would raise their priority, which an unprivileged process is refused (and would break
    every sign-in)."""
    fork = multiprocessing.get_context("fork")
    queue = fork.Queue()

    def child() -> None:
        os.setpriority(os.PRIO_PROCESS, 0, 15)
        hasher = _RecordingHasher()
        hasher.iterations = 1_000
        _RecordingHasher.seen.clear()
        encoded = hasher.encode("child", "childsalt123")
        queue.put((encoded, sorted({priority for _, priority in _RecordingHasher.seen})))

    process = fork.Process(target=child)
    process.start()
    process.join(30)
    assert process.exitcode == 0
    encoded, priorities = queue.get(timeout=5)
    assert priorities == [15]
    assert hashers.BackgroundPBKDF2PasswordHasher().verify("child", encoded)


def test_a_forked_child_hashes_although_its_parent_already_had_hashing_threads():
    """gunicorn and Celery fork workers: a child inherits the parent's pool object but not its
    threads, and must not wait on them forever."""
    hasher = hashers.BackgroundPBKDF2PasswordHasher()
    hasher.iterations = 1_000
    hasher.encode("parent", "parentsalt12")  # the parent's hashing threads now exist

    fork = multiprocessing.get_context("fork")
    queue = fork.Queue()
    child = fork.Process(target=_hash_in_child, args=(queue,))
    child.start()
    child.join(30)
    alive = child.is_alive()
    if alive:
        child.kill()
    assert not alive, "the forked child hung waiting on its parent's hashing threads"
    assert hasher.verify("child", queue.get(timeout=5))
