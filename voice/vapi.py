"""Vapi over plain HTTP (httpx), behind one small boundary: typed functions, a timeout, and
our own exceptions.

Every failure comes out as a `VapiError`, split the way a caller must act on it:
- `VapiUnavailable` (transient: timeouts, dropped connections, 5xx, 429): a retry may work;
  `VapiOutcomeUnknown` when no answer came, so Vapi may still have done it;
- permanent, never worth retrying as it is: `VapiNotConfigured` (key missing, 401/403),
  `VapiNotFound` (404), `VapiRejected` (any other 4xx: Vapi refused the request itself).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache

import httpx
from django.conf import settings

logger = logging.getLogger(__name__)

PAGE_SIZE = 100  # Vapi's default `limit` for list endpoints


class VapiError(Exception):
    """A Vapi call failed. `detail` is Vapi's text, for logs and admin only."""

    transient = False

    def __init__(self, detail: str = "", *, status: int | None = None):
        self.detail = detail
        self.status = status
        super().__init__(detail)


class VapiNotConfigured(VapiError):
    """No key, or Vapi refused it (401/403)."""


class VapiNotFound(VapiError):
    """The resource is not (or no longer) at Vapi."""


class VapiRejected(VapiError):
    """Vapi refused the request itself (400, 422, ...): the same request will fail again."""


class VapiUnavailable(VapiError):
    """Timeouts, 5xx, 429, an unreadable answer: a retry later may work."""

    transient = True


class VapiOutcomeUnknown(VapiUnavailable):
    """No answer (timeout, dropped connection): Vapi may still have done it."""


def is_configured() -> bool:
    return bool(settings.VAPI_PRIVATE_KEY)


@lru_cache(maxsize=8)
def _client_for(base_url: str, key: str, timeout: float) -> httpx.Client:
    return httpx.Client(
        base_url=base_url.rstrip("/"),
        headers={"Authorization": f"Bearer {key}"},
        timeout=timeout,
    )


def _error_for(status: int, detail: str) -> VapiError:
    if status in (401, 403):
        return VapiNotConfigured(detail, status=status)
    if status == 404:
        return VapiNotFound(detail, status=status)
    if status == 429 or status >= 500:
        return VapiUnavailable(detail, status=status)
    return VapiRejected(detail, status=status)


def _request(method: str, path: str, **kwargs) -> httpx.Response:
    if not is_configured():
        raise VapiNotConfigured("VAPI_PRIVATE_KEY is not set")
    client = _client_for(
        settings.VAPI_BASE_URL, settings.VAPI_PRIVATE_KEY, float(settings.PROVIDER_TIMEOUT_SECONDS)
    )
    try:
        response = client.request(method, path, **kwargs)
    except httpx.HTTPError as exc:
        logger.warning("vapi %s %s failed: %s", method, path, type(exc).__name__)
        raise VapiOutcomeUnknown(f"Vapi {method} {path}: {type(exc).__name__}: {exc}") from None
    if response.status_code >= 400:
        detail = f"Vapi {method} {path}: HTTP {response.status_code}: {response.text[:300]}"
        logger.warning("vapi call failed: %s", detail)
        raise _error_for(response.status_code, detail)
    return response


def _json(response: httpx.Response, what: str):
    try:
        return response.json()
    except ValueError:
        raise VapiUnavailable(f"Vapi {what} answered with no JSON") from None


def _list(path: str, **filters: str) -> Iterator[dict]:
    """Every row of a Vapi list endpoint, a page at a time.

    Vapi lists newest first and pages by time, not by cursor: the next page is the rows
    created at or before the oldest one seen (`createdAtLe`, so rows sharing that instant are
    not skipped; the ones already seen are dropped).
    """
    params = {"limit": PAGE_SIZE, **filters}
    seen: set[str] = set()
    while True:
        rows = _json(_request("GET", path, params=params), f"GET {path}")
        if not isinstance(rows, list):
            raise VapiUnavailable(f"Vapi GET {path} answered with no list")
        fresh = [row for row in rows if row.get("id") not in seen]
        yield from fresh
        if len(rows) < PAGE_SIZE or not fresh:
            return
        seen.update(row["id"] for row in fresh)
        params["createdAtLe"] = min(row["createdAt"] for row in rows)


NAME_LIMIT = 40  # Vapi's limit on assistant and phone-number names
WEBHOOK_PATH = "/api/voice/vapi/webhook"
# The server messages our assistants ask for (Vapi sends no type that is not listed).
SERVER_MESSAGES = ["end-of-call-report", "status-update"]


def webhook_server() -> dict:
    """Vapi's `server` object for our webhook: its URL and the X-Vapi-Secret header."""
    server: dict = {"url": settings.APP_BASE_URL.rstrip("/") + WEBHOOK_PATH}
    if settings.VAPI_WEBHOOK_SECRET:
        server["headers"] = {"X-Vapi-Secret": settings.VAPI_WEBHOOK_SECRET}
    return server


def import_twilio_number(
    *,
    phone_number: str,
    twilio_account_sid: str,
    twilio_auth_token: str,
    name: str,
    server: dict | None = None,
) -> str:
    """Import a Twilio number into Vapi with no assistant attached (so every inbound call
    sends `assistant-request` to `server`); returns Vapi's phone-number id."""
    if len(name) > NAME_LIMIT:
        raise ValueError(f"Vapi phone-number names are at most {NAME_LIMIT} characters")
    body = {
        "provider": "twilio",
        "number": phone_number,
        "twilioAccountSid": twilio_account_sid,
        "twilioAuthToken": twilio_auth_token,
        "name": name,
    }
    if server is not None:
        body["server"] = server
    response = _request("POST", "/phone-number", json=body)
    body = _json(response, "import")
    try:
        return str(body["id"])
    except (KeyError, TypeError):
        raise VapiUnavailable("Vapi import answered without an id") from None


def find_import(*, phone_number: str) -> str | None:
    """Vapi's id for an imported number, or None (recovers an import we never recorded)."""
    for row in _list("/phone-number"):
        if row.get("number") == phone_number:
            return str(row["id"])
    return None


def delete_import(*, phone_id: str) -> None:
    """Delete an import. Already deleted counts as done."""
    try:
        _request("DELETE", f"/phone-number/{phone_id}")
    except VapiNotFound:
        logger.info("vapi phone number %s was already deleted", phone_id)


def list_numbers() -> Iterator[dict]:
    """Every phone number imported into Vapi (id, number, assistantId, server, ...)."""
    return _list("/phone-number")


def route_number_to_server(*, phone_id: str, server: dict) -> None:
    """Point a number at our server with no assistant: every inbound call asks us first."""
    _request(
        "PATCH",
        f"/phone-number/{phone_id}",
        json={"assistantId": None, "squadId": None, "workflowId": None, "server": server},
    )


# --- Assistants ----------------------------------------------------------------------------


@dataclass(frozen=True)
class AssistantSpec:
    """What our agent asks Vapi for. `name` is ours (`vx-<agent id hex>`), to find it again."""

    name: str
    first_message: str
    instructions: str
    voice: str
    max_duration_seconds: int
    metadata: dict

    def body(self) -> dict:
        if len(self.name) > NAME_LIMIT:
            raise ValueError(f"Vapi assistant names are at most {NAME_LIMIT} characters")
        return {
            "name": self.name,
            "firstMessage": self.first_message,
            "model": {
                "provider": "openai",
                "model": "gpt-4o",
                "messages": [{"role": "system", "content": self.instructions}],
            },
            "voice": {"provider": "openai", "voiceId": self.voice},
            "server": webhook_server(),
            "serverMessages": SERVER_MESSAGES,
            "maxDurationSeconds": self.max_duration_seconds,
            "metadata": self.metadata,
        }


def _assistant_id(body, what: str) -> str:
    try:
        return str(body["id"])
    except (KeyError, TypeError):
        raise VapiUnavailable(f"Vapi {what} answered without an id") from None


def create_assistant(spec: AssistantSpec) -> str:
    """Create an assistant; returns its Vapi id. A VapiOutcomeUnknown may still have
    created it: look it up with `find_assistant(name=...)` before trying again."""
    return _assistant_id(
        _json(_request("POST", "/assistant", json=spec.body()), "create"), "create"
    )


def find_assistant(*, name: str) -> str | None:
    """The Vapi id of the (oldest) assistant with this name, or None."""
    found = None
    for row in _list("/assistant", name=name):
        if row.get("name") == name:
            found = str(row["id"])  # newest first: the last match is the oldest
    return found


def update_assistant(*, assistant_id: str, spec: AssistantSpec) -> None:
    _request("PATCH", f"/assistant/{assistant_id}", json=spec.body())


# --- Calls ---------------------------------------------------------------------------------


def list_calls(*, created_since: datetime, phone_id: str | None = None) -> Iterator[dict]:
    """Every call Vapi created at or after `created_since` (newest first, all pages)."""
    filters = {"createdAtGe": created_since.astimezone(UTC).isoformat(timespec="milliseconds")}
    filters["createdAtGe"] = filters["createdAtGe"][:-6] + "Z"
    if phone_id:
        filters["phoneNumberId"] = phone_id
    return _list("/call", **filters)


def place_sandbox_call(*, number: str, duration_seconds: int, caller: str) -> dict:
    """Ask the local Vapi double (sandbox/vapi.py, `make run`) to ring `number`: it sends our
    webhook assistant-request, then the end-of-call-report. Real Vapi has no such endpoint."""
    response = _request(
        "POST",
        "/sandbox/call",
        json={"number": number, "durationSeconds": duration_seconds, "customerNumber": caller},
        timeout=60,
    )
    return _json(response, "sandbox call")
