"""Vapi's phone-number API as far as provisioning uses it: Bearer auth, JSON.

With a TwilioDouble attached, an import is refused unless the number really is owned by that
Twilio account and the auth token is that account's (so a wrong or garbled token shows up).
Lists page as Vapi's do: newest first, `limit` rows (default 100), filtered by `createdAtLe` /
`createdAtLt`. Steps for `fail()` / `delay()`: import, list, delete.
"""

from __future__ import annotations

import re
import secrets
import uuid
from datetime import UTC, datetime

from sandbox.server import FaultyDouble, Reply, Request
from sandbox.twilio import TwilioDouble

VAPI_KEY = "vapi-private-key-for-tests"


class VapiDouble(FaultyDouble):
    def __init__(self, *, key: str = VAPI_KEY, twilio: TwilioDouble | None = None):
        super().__init__()
        self.key = key
        self.twilio = twilio
        self.imports: dict[str, dict] = {}
        self.deleted: list[dict] = []

    def env(self) -> dict[str, str]:
        return {"VAPI_PRIVATE_KEY": self.key, "VAPI_BASE_URL": self.url}

    def imported_numbers(self) -> list[str]:
        with self.lock:
            return sorted(row["number"] for row in self.imports.values())

    def dispatch(self, request: Request) -> Reply:
        auth = request.headers.get("authorization", "")
        if not secrets.compare_digest(auth, f"Bearer {self.key}"):
            return Reply(
                401,
                {
                    "message": "Invalid Key. Hot tip, you may be using the private key instead of the public key, or vice versa.",
                    "statusCode": 401,
                },
            )
        if request.path == "/phone-number" and request.method == "POST":
            return self._switches("import") or self._import(request)
        if request.path == "/phone-number" and request.method == "GET":
            return self._switches("list") or self._list(request)
        match = re.fullmatch(r"/phone-number/([\w-]+)", request.path)
        if match and request.method == "DELETE":
            return self._switches("delete") or self._delete(match[1])
        return Reply(404, {"message": "Cannot find route", "statusCode": 404})

    def _list(self, request: Request) -> Reply:
        with self.lock:
            rows = list(self.imports.values())
        rows.reverse()  # newest first; rows of one instant keep a stable order
        rows.sort(key=lambda row: row["createdAt"], reverse=True)
        if "createdAtLe" in request.query:
            rows = [row for row in rows if row["createdAt"] <= request.query["createdAtLe"]]
        if "createdAtLt" in request.query:
            rows = [row for row in rows if row["createdAt"] < request.query["createdAtLt"]]
        return Reply(200, rows[: int(request.query.get("limit", 100))])

    def _import(self, request: Request) -> Reply:
        body = request.json()
        if body.get("provider") != "twilio" or not body.get("number"):
            return Reply(400, {"message": ["provider must be twilio"], "statusCode": 400})
        if self.twilio is not None:
            account = self.twilio.accounts.get(body.get("twilioAccountSid", ""))
            owned = (
                any(
                    n["phone_number"] == body["number"] and n["account_sid"] == account["sid"]
                    for n in self.twilio.owned_numbers()
                )
                if account
                else False
            )
            if not account or account["auth_token"] != body.get("twilioAuthToken") or not owned:
                return Reply(400, {"message": "Number Not Found on Twilio.", "statusCode": 400})
        with self.lock:
            if any(row["number"] == body["number"] for row in self.imports.values()):
                return Reply(400, {"message": "Existing phone number", "statusCode": 400})
            phone_id = str(uuid.uuid4())
            row = {
                "id": phone_id,
                "provider": "twilio",
                "number": body["number"],
                "name": body.get("name"),
                "twilioAccountSid": body.get("twilioAccountSid"),
                "status": "active",
                "createdAt": datetime.now(UTC).isoformat(timespec="milliseconds")[:-6] + "Z",
            }
            self.imports[phone_id] = row
        return Reply(201, row)

    def _delete(self, phone_id: str) -> Reply:
        with self.lock:
            row = self.imports.pop(phone_id, None)
            if row is None:
                return Reply(404, {"message": "Not Found", "statusCode": 404})
            self.deleted.append(row)
        return Reply(200, row)
