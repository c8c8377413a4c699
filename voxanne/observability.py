"""Request ids and structured logs: one JSON line per request, never a token or password."""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from contextvars import ContextVar

request_id_var: ContextVar[str] = ContextVar("request_id", default="-")
access_log = logging.getLogger("voxanne.access")

# Paths whose last segment is a credential (a signed link sent by email): logged without it.
SECRET_LINK = re.compile(
    r"(/api/(?:abandonment/unsubscribe|auth/verify-email)/)(?!resend(?![^/?#\s\"']))[^/?#\s\"']+"
)


def redact(text: str) -> str:
    """`text` with the credential of any signed link in it replaced by [redacted]."""
    return SECRET_LINK.sub(r"\1[redacted]", text)


def current_request_id() -> str:
    return request_id_var.get()


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id_var.get()
        return True


class RedactFilter(logging.Filter):
    """Takes signed links' credentials out of every record (Django's own 'Not Found: <path>'
    and error lines name the path too)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if SECRET_LINK.search(message):
            record.msg, record.args = redact(message), None
        return True


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON object; fields passed with `extra=` are kept."""

    _standard = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "request_id"}

    def format(self, record: logging.LogRecord) -> str:
        payload = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname,
            "logger": record.name,
            "request_id": getattr(record, "request_id", "-"),
            "message": record.getMessage(),
        }
        payload.update({k: v for k, v in vars(record).items() if k not in self._standard})
        if record.exc_info:
            payload["exc"] = self.formatException(record.exc_info)
        return json.dumps(payload, default=str)


class RequestLogMiddleware:
    """Gives every request an id (X-Request-ID) and logs one line when it ends."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        request_id = uuid.uuid4().hex
        request.request_id = request_id
        token = request_id_var.set(request_id)
        started = time.perf_counter()
        try:
            response = self.get_response(request)
            response["X-Request-ID"] = request_id
            fields = {
                "method": request.method,
                "path": redact(request.path),
                "status": response.status_code,
                "duration_ms": round((time.perf_counter() - started) * 1000, 1),
            }
            access_log.info(
                "%(method)s %(path)s %(status)s %(duration_ms)sms", fields, extra=fields
            )
            return response
        finally:
            request_id_var.reset(token)
