"""Twilio, behind one small boundary: typed functions, timeouts, our own exceptions.

Every call uses the master credentials; subaccount resources are reached with the master
credentials and the subaccount SID in the URL. `TWILIO_API_BASE_URL` replaces the SDK's
`https://api.twilio.com` (tests and the local sandbox point it at a double). Nothing from the
`twilio` package leaves this module: callers see `TelephonyError` subclasses only.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import lru_cache

from django.conf import settings
from requests.exceptions import RequestException
from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client

logger = logging.getLogger(__name__)
# The SDK logs every request and response header at INFO; keep it to warnings.
_sdk_logger = logging.getLogger("voxanne.twilio.sdk")
_sdk_logger.setLevel(logging.WARNING)

AUTH_FAILED = 20003
NOT_FOUND = 20404
NUMBER_NO_LONGER_AVAILABLE = 21422
REGULATORY_CODES = frozenset({21631, 21649})


class TelephonyError(Exception):
    """A provider call failed. `detail` is the provider's text, for logs and admin only."""

    def __init__(self, detail: str = "", *, code: int | None = None, status: int | None = None):
        self.detail = detail
        self.code = code
        self.status = status
        super().__init__(detail)


class NotConfigured(TelephonyError):
    """Credentials missing or refused (Twilio 20003)."""


class ProviderUnavailable(TelephonyError):
    """Timeouts, 5xx, anything unexpected: a retry later may work."""


class OutcomeUnknown(ProviderUnavailable):
    """No answer (timeout, dropped connection): the provider may still have done it."""


class NoNumbersAvailable(TelephonyError):
    """The search found nothing for this country / area code."""


class NumberNoLongerAvailable(TelephonyError):
    """Twilio 21422: someone bought the number between our search and our purchase."""


class RegulatoryRequirement(TelephonyError):
    """Twilio 21631 / 21649: an address or regulatory bundle is required."""


class NotFoundAtProvider(TelephonyError):
    """The resource is already gone (a release that already happened)."""


@dataclass(frozen=True)
class Subaccount:
    sid: str
    auth_token: str
    friendly_name: str

    def __repr__(self) -> str:  # never print the token
        return f"Subaccount(sid={self.sid!r}, friendly_name={self.friendly_name!r})"


@dataclass(frozen=True)
class PurchasedNumber:
    sid: str
    phone_number: str
    friendly_name: str


def is_configured() -> bool:
    return bool(settings.TWILIO_MASTER_ACCOUNT_SID and settings.TWILIO_MASTER_AUTH_TOKEN)


@lru_cache(maxsize=8)
def _client_for(sid: str, token: str, base_url: str, timeout: float) -> Client:
    http_client = TwilioHttpClient(timeout=timeout, logger=_sdk_logger)
    client = Client(sid, token, http_client=http_client, environment={})
    client.api.base_url = base_url.rstrip("/")
    return client


def _client() -> Client:
    if not is_configured():
        raise NotConfigured("Twilio master credentials are not set")
    return _client_for(
        settings.TWILIO_MASTER_ACCOUNT_SID,
        settings.TWILIO_MASTER_AUTH_TOKEN,
        settings.TWILIO_API_BASE_URL,
        float(settings.PROVIDER_TIMEOUT_SECONDS),
    )


def _mapped(exc: Exception) -> TelephonyError:
    if isinstance(exc, TwilioRestException):
        detail = f"Twilio {exc.status} code {exc.code}: {exc.msg}"
        code, status = exc.code, exc.status
        if code == AUTH_FAILED or status == 401:
            return NotConfigured(detail, code=code, status=status)
        if code == NUMBER_NO_LONGER_AVAILABLE:
            return NumberNoLongerAvailable(detail, code=code, status=status)
        if code in REGULATORY_CODES:
            return RegulatoryRequirement(detail, code=code, status=status)
        if status == 404 or code == NOT_FOUND:
            return NotFoundAtProvider(detail, code=code, status=status)
        return ProviderUnavailable(detail, code=code, status=status)
    if isinstance(exc, RequestException):  # timeouts, dropped connections
        return OutcomeUnknown(f"{type(exc).__name__}: {exc}")
    # Plain TwilioException (list pages raise it).
    return ProviderUnavailable(f"{type(exc).__name__}: {exc}")


class _calling:
    """Maps SDK and transport exceptions to ours, for the block it wraps."""

    def __init__(self, what: str):
        self.what = what

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc is None:
            return False
        if isinstance(exc, (TwilioException, RequestException)):
            mapped = _mapped(exc)
            logger.warning("twilio %s failed: %s", self.what, mapped.detail)
            raise mapped from None
        return False


def create_subaccount(*, friendly_name: str) -> Subaccount:
    """Create a subaccount under the master account (FriendlyName cut to Twilio's 64 chars)."""
    with _calling("create subaccount"):
        account = _client().api.v2010.accounts.create(friendly_name=friendly_name[:64])
    return Subaccount(sid=account.sid, auth_token=account.auth_token, friendly_name=friendly_name)


def find_subaccounts_named(*, friendly_name: str) -> list[Subaccount]:
    """Active subaccounts whose FriendlyName is exactly `friendly_name`."""
    with _calling("list subaccounts"):
        found = _client().api.v2010.accounts.list(
            friendly_name=friendly_name, status="active", limit=20
        )
    return [
        Subaccount(sid=a.sid, auth_token=a.auth_token, friendly_name=a.friendly_name)
        for a in found
        if a.friendly_name == friendly_name and a.sid != settings.TWILIO_MASTER_ACCOUNT_SID
    ]


def search_local_numbers(
    *, subaccount_sid: str, country: str, area_code: str | None, limit: int = 5
) -> list[str]:
    """E.164 numbers for sale. Raises NoNumbersAvailable when there are none."""
    with _calling("search numbers"):
        local = _client().api.v2010.accounts(subaccount_sid).available_phone_numbers(country).local
        filters = {"area_code": area_code} if area_code else {}
        found = local.list(limit=limit, **filters)
    numbers = [n.phone_number for n in found]
    if not numbers:
        raise NoNumbersAvailable(f"no local numbers in {country} area code {area_code or 'any'}")
    return numbers


def buy_number(*, subaccount_sid: str, phone_number: str, friendly_name: str) -> PurchasedNumber:
    """Buy a number on the subaccount, tagged with `friendly_name` so a retry can find it."""
    with _calling("buy number"):
        bought = (
            _client()
            .api.v2010.accounts(subaccount_sid)
            .incoming_phone_numbers.create(phone_number=phone_number, friendly_name=friendly_name)
        )
    return PurchasedNumber(
        sid=bought.sid, phone_number=bought.phone_number, friendly_name=bought.friendly_name
    )


def find_numbers_named(*, subaccount_sid: str, friendly_name: str) -> list[PurchasedNumber]:
    """Numbers on the subaccount whose FriendlyName is exactly `friendly_name`."""
    with _calling("list numbers"):
        found = (
            _client()
            .api.v2010.accounts(subaccount_sid)
            .incoming_phone_numbers.list(friendly_name=friendly_name, limit=20)
        )
    return [
        PurchasedNumber(sid=n.sid, phone_number=n.phone_number, friendly_name=n.friendly_name)
        for n in found
        if n.friendly_name == friendly_name
    ]


def release_number(*, subaccount_sid: str, number_sid: str) -> None:
    """Release a number we own. Already released counts as done."""
    try:
        with _calling("release number"):
            _client().api.v2010.accounts(subaccount_sid).incoming_phone_numbers(number_sid).delete()
    except NotFoundAtProvider:
        logger.info("twilio number %s was already released", number_sid)
