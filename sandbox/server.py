"""A small threaded HTTP server that hands each request to a double's `dispatch` method, and the
base of the doubles: start/stop and the switches that fail or delay a step."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    raw_query: str = ""  # the query string as sent, for a double that decodes it its own way

    def form(self) -> dict[str, str]:
        return {k: v[-1] for k, v in parse_qs(self.body.decode()).items()}

    def json(self) -> dict:
        return json.loads(self.body or b"{}")


@dataclass
class Reply:
    status: int
    body: object = None  # sent as JSON; a str is sent as it is (a page)
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)

    def payload(self) -> bytes:
        if self.body is None:
            return b""
        if isinstance(self.body, str):
            return self.body.encode()
        return json.dumps(self.body).encode()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server: _Server

    def _serve(self) -> None:
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        request = Request(
            method=self.command,
            path=parts.path,
            query={k: v[-1] for k, v in parse_qs(parts.query).items()},
            headers={k.lower(): v for k, v in self.headers.items()},
            body=self.rfile.read(length) if length else b"",
            raw_query=parts.query,
        )
        double = self.server.double
        try:
            reply = double.dispatch(request)
        except Exception as exc:  # a bug in the double must show up as a 500, not a hang
            reply = double.crashed(exc)
        payload = reply.payload()
        self.send_response(reply.status)
        if payload:
            self.send_header("Content-Type", reply.content_type)
        for name, value in double.headers_for(reply).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if payload:
            self.wfile.write(payload)

    do_GET = do_POST = do_DELETE = do_PATCH = _serve

    def log_message(self, format, *args) -> None:
        return None


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request, client_address) -> None:
        # A client that timed out and hung up is a scenario under test, not a failure.
        import sys

        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)

    def __init__(self, double: FaultyDouble, port: int):
        self.double = double
        super().__init__(("127.0.0.1", port), _Handler)


class FaultyDouble:
    """Base: start/stop, per-step call counters, and switches to fail or delay any step."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.calls: Counter[str] = Counter()
        self._failures: dict[str, list[Reply]] = {}
        self._delays: dict[str, float] = {}
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # switches
    def fail(self, step: str, reply: Reply, *, times: int = 1) -> None:
        """The next `times` calls of `step` answer `reply` (times=-1: every call)."""
        with self.lock:
            self._failures[step] = [reply] * (10**6 if times < 0 else times)

    def delay(self, step: str, seconds: float) -> None:
        with self.lock:
            self._delays[step] = seconds

    def heal(self) -> None:
        with self.lock:
            self._failures.clear()
            self._delays.clear()

    def _switches(self, step: str) -> Reply | None:
        with self.lock:
            self.calls[step] += 1
            delay = self._delays.get(step, 0)
            queue = self._failures.get(step)
            failure = queue.pop() if queue else None
        if delay:
            time.sleep(delay)
        return failure

    # lifecycle
    @property
    def url(self) -> str:
        assert self._server is not None, "start() the double first"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self, port: int = 0):
        self._server = _Server(self, port)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def dispatch(self, request: Request) -> Reply:
        raise NotImplementedError

    def crashed(self, exc: Exception) -> Reply:
        """The answer when `dispatch` raised (a bug in the double)."""
        return Reply(500, {"message": f"double crashed: {exc!r}"})

    def headers_for(self, reply: Reply) -> dict[str, str]:
        """The headers sent with `reply`, besides Content-Type and Content-Length."""
        return reply.headers
