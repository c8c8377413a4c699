"""The gunicorn the README runs (gunicorn.conf.py, read from the working directory): slow
clients do not take the service down, and what gunicorn answers by itself is never a 5xx."""

from __future__ import annotations

import socket
import time
from urllib.parse import urlsplit

import httpx
import pytest

from bench.harness import gunicorn
from tests.doubles.fixtures import test_process_env

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def server():
    with gunicorn(test_process_env()) as running:  # no flags: the settings are the file's
        yield running


def connect(server) -> socket.socket:
    parts = urlsplit(server.url)
    return socket.create_connection((parts.hostname, parts.port), timeout=10)


def raw_status(server, request: bytes) -> int:
    with connect(server) as sock:
        sock.sendall(request)
        answer = b""
        while b"\r\n" not in answer:
            chunk = sock.recv(4096)
            if not chunk:
                break
            answer += chunk
    return int(answer.split(b" ", 2)[1])


def test_two_uploads_that_stall_after_their_headers_do_not_stop_healthz(server):
    stalled = []
    try:
        for _ in range(3):
            sock = connect(server)
            sock.sendall(
                b"POST /api/auth/signup HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                b"Content-Type: application/json\r\nContent-Length: 10000\r\n\r\n{"
            )
            stalled.append(sock)
        time.sleep(0.5)  # the server has read their headers and waits for the bodies
        began = time.monotonic()
        for _ in range(5):
            assert httpx.get(f"{server.url}/healthz", timeout=5).status_code == 200
        assert time.monotonic() - began < 5
    finally:
        for sock in stalled:
            sock.close()


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GET /healthz?" + b"a" * 10_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",  # long request line
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 20_000 + b"\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\nHost: x\r\n"
        + b"".join(b"X-H%d: v\r\n" % i for i in range(200))
        + b"\r\n",
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nBad Header: v\r\n\r\n",
        b"GET /healthz HTTP/9.9\r\nHost: x\r\n\r\n",
        b"NOT-A-METHOD\r\n\r\n",
        b"POST /api/auth/signup HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
        b"POST /api/auth/signup HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n"
        b"Content-Length: 2\r\n\r\nab",
        b"POST /api/auth/signup HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n",
        b"POST /api/auth/signup HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-A: \xff\xfe\x00\r\n\r\n",
    ],
    ids=[
        "request-line",
        "header-size",
        "header-count",
        "header-name",
        "version",
        "garbage",
        "content-length",
        "two-content-lengths",
        "transfer-coding",
        "bad-chunk",
        "header-bytes",
    ],
)
def test_requests_gunicorn_refuses_itself_get_a_4xx(server, request_bytes):
    status = raw_status(server, request_bytes)
    assert 400 <= status < 500, status
    assert httpx.get(f"{server.url}/healthz", timeout=5).status_code == 200
