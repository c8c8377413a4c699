"""Twilio's REST API (2010-04-01) as far as provisioning uses it, on the wire.

Form-encoded POSTs, Basic auth (master credentials reach every subaccount; a subaccount's
credentials only itself), JSON errors `{"code", "message", "status", "more_info"}`, list pages
keyed `available_phone_numbers` / `incoming_phone_numbers`. Steps for `fail()` / `delay()`:
create_account, fetch_account, search, buy, list_numbers, release.
"""

from __future__ import annotations

import base64
import itertools
import re
import secrets

from sandbox.server import FaultyDouble, Reply, Request

PREFIX = "/2010-04-01"
MASTER_SID = "AC" + "0" * 31 + "1"
MASTER_TOKEN = "master-token-for-tests"


def twilio_error(status: int, code: int, message: str) -> Reply:
    return Reply(
        status,
        {
            "code": code,
            "message": message,
            "more_info": f"https://www.twilio.com/docs/errors/{code}",
            "status": status,
        },
    )


AUTH_FAILED = twilio_error(401, 20003, "Authenticate")
NUMBER_TAKEN = twilio_error(
    400, 21422, "PhoneNumber Requested is not available or is no longer available."
)
ADDRESS_REQUIRED = twilio_error(
    400, 21631, "Phone Number Requires an Address but the 'AddressSid' parameter was empty."
)
BUNDLE_REQUIRED = twilio_error(400, 21649, "Phone Number Requires a Bundle.")
SERVER_ERROR = twilio_error(500, 20500, "An internal server error has occurred")
SERVICE_UNAVAILABLE = twilio_error(503, 20503, "Service unavailable")


def _page(key: str, uri: str, records: list[dict]) -> dict:
    return {
        key: records,
        "uri": uri,
        "first_page_uri": uri,
        "next_page_uri": None,
        "previous_page_uri": None,
        "page": 0,
        "page_size": 50,
        "start": 0,
        "end": max(len(records) - 1, 0),
    }


class TwilioDouble(FaultyDouble):
    def __init__(self, *, master_sid: str = MASTER_SID, master_token: str = MASTER_TOKEN):
        super().__init__()
        self.master_sid = master_sid
        self.master_token = master_token
        self.accounts: dict[str, dict] = {}
        self.numbers: dict[str, dict] = {}  # owned now, by number SID
        self.released: list[dict] = []
        self.areas_without_numbers: set[str] = set()
        self._serial = itertools.count(1)

    # --- what tests assert on ------------------------------------------------------------
    def owned_numbers(self, account_sid: str | None = None) -> list[dict]:
        with self.lock:
            return [
                dict(n)
                for n in self.numbers.values()
                if account_sid is None or n["account_sid"] == account_sid
            ]

    def subaccounts(self) -> list[dict]:
        with self.lock:
            return [dict(a) for a in self.accounts.values()]

    def env(self) -> dict[str, str]:
        """Settings/env pointing the application at this double."""
        return {
            "TWILIO_MASTER_ACCOUNT_SID": self.master_sid,
            "TWILIO_MASTER_AUTH_TOKEN": self.master_token,
            "TWILIO_API_BASE_URL": self.url,
        }

    # --- the wire ------------------------------------------------------------------------
    def _caller(self, request: Request) -> str | None:
        header = request.headers.get("authorization", "")
        if not header.startswith("Basic "):
            return None
        try:
            user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        except ValueError:
            return None
        if user == self.master_sid and secrets.compare_digest(password, self.master_token):
            return user
        account = self.accounts.get(user)
        if account and secrets.compare_digest(password, account["auth_token"]):
            return user
        return None

    def _may_use(self, caller: str, account_sid: str) -> bool:
        if caller == account_sid:
            return True
        return caller == self.master_sid and account_sid in self.accounts

    def dispatch(self, request: Request) -> Reply:
        path = request.path
        if not path.startswith(PREFIX):
            return twilio_error(404, 20404, "The requested resource was not found")
        path = path[len(PREFIX) :]
        caller = self._caller(request)
        if caller is None:
            return AUTH_FAILED

        if path == "/Accounts.json" and request.method == "POST":
            return self._step("create_account") or self._create_account(request)
        if path == "/Accounts.json" and request.method == "GET":
            return self._step("list_accounts") or self._list_accounts(request)
        match = re.fullmatch(r"/Accounts/(AC\w+)\.json", path)
        if match and request.method == "GET":
            if not self._may_use(caller, match[1]):
                return twilio_error(404, 20404, "The requested resource was not found")
            return self._step("fetch_account") or Reply(200, self._account_json(match[1]))
        match = re.fullmatch(r"/Accounts/(AC\w+)/(.+)", path)
        if not match:
            return twilio_error(404, 20404, "The requested resource was not found")
        account_sid, rest = match[1], match[2]
        if not self._may_use(caller, account_sid):
            return AUTH_FAILED
        local = re.fullmatch(r"AvailablePhoneNumbers/(\w\w)/Local\.json", rest)
        if local and request.method == "GET":
            return self._step("search") or self._search(request, account_sid, local[1])
        if rest == "IncomingPhoneNumbers.json" and request.method == "POST":
            return self._step("buy") or self._buy(request, account_sid)
        if rest == "IncomingPhoneNumbers.json" and request.method == "GET":
            return self._step("list_numbers") or self._list_numbers(request, account_sid)
        one = re.fullmatch(r"IncomingPhoneNumbers/(PN\w+)\.json", rest)
        if one and request.method == "DELETE":
            return self._step("release") or self._release(account_sid, one[1])
        return twilio_error(404, 20404, "The requested resource was not found")

    def _step(self, step: str) -> Reply | None:
        return self._switches(step)

    def _account_json(self, sid: str) -> dict:
        account = self.accounts.get(sid) or {
            "sid": sid,
            "friendly_name": "master",
            "auth_token": self.master_token,
            "status": "active",
        }
        return {
            **account,
            "owner_account_sid": self.master_sid,
            "type": "Full",
            "uri": f"{PREFIX}/Accounts/{sid}.json",
        }

    def _create_account(self, request: Request) -> Reply:
        form = request.form()
        friendly_name = form.get("FriendlyName", "")
        if len(friendly_name) > 64:
            return twilio_error(400, 20001, "FriendlyName is too long")
        sid = "AC" + secrets.token_hex(16)
        with self.lock:
            self.accounts[sid] = {
                "sid": sid,
                "friendly_name": friendly_name,
                "auth_token": secrets.token_hex(16),
                "status": "active",
            }
        return Reply(201, self._account_json(sid))

    def _list_accounts(self, request: Request) -> Reply:
        """The master and its subaccounts, filtered by FriendlyName and Status as Twilio does."""
        name, status = request.query.get("FriendlyName"), request.query.get("Status")
        with self.lock:
            accounts = [self._account_json(sid) for sid in [self.master_sid, *self.accounts]]
        records = [
            account
            for account in accounts
            if (name is None or account["friendly_name"] == name)
            and (status is None or account["status"] == status)
        ]
        return Reply(200, _page("accounts", request.path, records))

    def _search(self, request: Request, account_sid: str, country: str) -> Reply:
        area = request.query.get("AreaCode") or "415"
        limit = int(request.query.get("PageSize") or 20)
        uri = request.path
        if area in self.areas_without_numbers or country != "US":
            return Reply(200, _page("available_phone_numbers", uri, []))
        with self.lock:
            owned = {n["phone_number"] for n in self.numbers.values()}
            candidates = []
            while len(candidates) < min(limit, 3):
                number = f"+1{area}555{next(self._serial) % 10000:04d}"
                if number not in owned:
                    candidates.append(number)
        records = [
            {
                "phone_number": n,
                "friendly_name": f"({n[2:5]}) {n[5:8]}-{n[8:]}",
                "iso_country": country,
                "region": "CA",
                "capabilities": {"voice": True, "SMS": True, "MMS": True},
            }
            for n in candidates
        ]
        return Reply(200, _page("available_phone_numbers", uri, records))

    def _buy(self, request: Request, account_sid: str) -> Reply:
        form = request.form()
        number = form.get("PhoneNumber", "")
        if not re.fullmatch(r"\+1\d{10}", number):
            return twilio_error(400, 21421, "PhoneNumber is invalid")
        with self.lock:
            if any(n["phone_number"] == number for n in self.numbers.values()):
                return NUMBER_TAKEN
            sid = "PN" + secrets.token_hex(16)
            record = {
                "sid": sid,
                "account_sid": account_sid,
                "phone_number": number,
                "friendly_name": form.get("FriendlyName") or number,
                "uri": f"{PREFIX}/Accounts/{account_sid}/IncomingPhoneNumbers/{sid}.json",
            }
            self.numbers[sid] = record
        return Reply(201, record)

    def _list_numbers(self, request: Request, account_sid: str) -> Reply:
        wanted = request.query.get("FriendlyName")
        with self.lock:
            records = [
                dict(n)
                for n in self.numbers.values()
                if n["account_sid"] == account_sid
                and (wanted is None or n["friendly_name"] == wanted)
            ]
        return Reply(200, _page("incoming_phone_numbers", request.path, records))

    def _release(self, account_sid: str, number_sid: str) -> Reply:
        with self.lock:
            record = self.numbers.get(number_sid)
            if record is None or record["account_sid"] != account_sid:
                return twilio_error(404, 20404, "The requested resource was not found")
            self.released.append(self.numbers.pop(number_sid))
        return Reply(204)
