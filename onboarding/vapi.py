"""Vapi over plain HTTP (httpx): import a Twilio number, find it again, delete it.

Errors come out as onboarding.telephony's exception types, so the service handles both
providers the same way.
"""

from __future__ import annotations

import logging
from functools import lru_cache

import httpx
from django.conf import settings

from onboarding.telephony import (
    NotConfigured,
    NotFoundAtProvider,
    OutcomeUnknown,
    ProviderUnavailable,
)

logger = logging.getLogger(__name__)


def is_configured() -> bool:
    return bool(settings.VAPI_PRIVATE_KEY)


@lru_cache(maxsize=8)
def _client_for(base_url: str, key: str, timeout: float) -> httpx.Client:
    return httpx.Client(
        base_url=base_url.rstrip("/"),
        headers={"Authorization": f"Bearer {key}"},
        timeout=timeout,
    )


def _request(method: str, path: str, **kwargs) -> httpx.Response:
    if not is_configured():
        raise NotConfigured("VAPI_PRIVATE_KEY is not set")
    client = _client_for(
        settings.VAPI_BASE_URL, settings.VAPI_PRIVATE_KEY, float(settings.PROVIDER_TIMEOUT_SECONDS)
    )
    try:
        response = client.request(method, path, **kwargs)
    except httpx.HTTPError as exc:
        logger.warning("vapi %s %s failed: %s", method, path, type(exc).__name__)
        raise OutcomeUnknown(f"Vapi {method} {path}: {type(exc).__name__}: {exc}") from None
    if response.status_code >= 400:
        detail = f"Vapi {method} {path}: HTTP {response.status_code}: {response.text[:300]}"
        logger.warning("vapi call failed: %s", detail)
        if response.status_code in (401, 403):
            raise NotConfigured(detail, status=response.status_code)
        if response.status_code == 404:
            raise NotFoundAtProvider(detail, status=response.status_code)
        raise ProviderUnavailable(detail, status=response.status_code)
    return response


def import_twilio_number(
    *, phone_number: str, twilio_account_sid: str, twilio_auth_token: str, name: str
) -> str:
    """Import a Twilio number into Vapi; returns Vapi's phone-number id."""
    response = _request(
        "POST",
        "/phone-number",
        json={
            "provider": "twilio",
            "number": phone_number,
            "twilioAccountSid": twilio_account_sid,
            "twilioAuthToken": twilio_auth_token,
            "name": name,
        },
    )
    try:
        return str(response.json()["id"])
    except (ValueError, KeyError, TypeError):
        raise ProviderUnavailable("Vapi import answered without an id") from None


def find_import(*, phone_number: str) -> str | None:
    """Vapi's id for an imported number, or None (recovers an import we never recorded)."""
    rows = _request("GET", "/phone-number", params={"limit": 1000}).json()
    for row in rows if isinstance(rows, list) else []:
        if row.get("number") == phone_number:
            return str(row["id"])
    return None


def delete_import(*, phone_id: str) -> None:
    """Delete an import. Already deleted counts as done."""
    try:
        _request("DELETE", f"/phone-number/{phone_id}")
    except NotFoundAtProvider:
        logger.info("vapi phone number %s was already deleted", phone_id)
