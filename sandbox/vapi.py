"""Vapi's API as far as we use it, on the wire, and Vapi's side of a phone call.

The REST side: Bearer auth, JSON, Vapi-shaped errors. Phone numbers (import, list, get, patch,
delete), assistants (create, list with a `name` filter, get, patch) and calls (list with
`createdAtGe` / `createdAtLe` / `phoneNumberId`). Lists page as Vapi's do: newest first,
`limit` rows (default 100). Names are at most 40 characters, as Vapi's are.

With a TwilioDouble attached, an import is refused unless the number really is owned by that
Twilio account and the auth token is that account's (so a wrong or garbled token shows up).

The call side: `start_call` asks the number's server (`assistant-request`, unless the number
has an assistant), `end_call` ends it, and `report`/`status_update` build the server messages
our webhook gets; `send` delivers any message to the server URL with its headers (the
`X-Vapi-Secret` we configured), as often, as late and in whatever order a test wants, or never.
Vapi only sends the message types the assistant's `serverMessages` lists; `deliver_report`
honours that. `POST /sandbox/call` places a whole call (the `sandbox_call` command uses it).

Steps for `fail()` / `delay()`: import, list, get_number, update_number, delete,
create_assistant, list_assistants, get_assistant, update_assistant, list_calls.
`time_out_after(step, seconds)` makes a step do its work and then answer late (Vapi creating
an assistant and the caller's timeout expiring before the answer).
"""

from __future__ import annotations

import json
import re
import secrets
import time
import urllib.error
import urllib.request
import uuid
from datetime import UTC, datetime, timedelta

from sandbox.server import FaultyDouble, Reply, Request
from sandbox.twilio import TwilioDouble

VAPI_KEY = "vapi-private-key-for-tests"
NAME_LIMIT = 40


def timestamp(at: datetime | None = None) -> str:
    """Vapi's timestamp format: ISO 8601 in UTC with milliseconds and a Z."""
    return (at or datetime.now(UTC)).astimezone(UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


def _error(status: int, message: object) -> Reply:
    return Reply(status, {"message": message, "statusCode": status})


NOT_FOUND = _error(404, "Not Found")


class VapiDouble(FaultyDouble):
    def __init__(self, *, key: str = VAPI_KEY, twilio: TwilioDouble | None = None):
        super().__init__()
        self.key = key
        self.twilio = twilio
        self.imports: dict[str, dict] = {}
        self.deleted: list[dict] = []
        self.assistants: dict[str, dict] = {}
        self.phone_calls: dict[str, dict] = {}
        self._late: dict[str, float] = {}

    def env(self) -> dict[str, str]:
        return {"VAPI_PRIVATE_KEY": self.key, "VAPI_BASE_URL": self.url}

    def imported_numbers(self) -> list[str]:
        with self.lock:
            return sorted(row["number"] for row in self.imports.values())

    def time_out_after(self, step: str, seconds: float) -> None:
        """`step` does its work, then waits `seconds` before answering."""
        with self.lock:
            self._late[step] = seconds

    def heal(self) -> None:
        super().heal()
        with self.lock:
            self._late.clear()

    def _answer_late(self, step: str, reply: Reply) -> Reply:
        with self.lock:
            late = self._late.get(step, 0)
        if late:
            time.sleep(late)
        return reply

    # --- REST ----------------------------------------------------------------------------

    def dispatch(self, request: Request) -> Reply:
        auth = request.headers.get("authorization", "")
        if not secrets.compare_digest(auth, f"Bearer {self.key}"):
            return _error(
                401,
                "Invalid Key. Hot tip, you may be using the private key instead of the public key, or vice versa.",
            )
        method, path = request.method, request.path
        if path == "/phone-number" and method == "POST":
            return self._switches("import") or self._import(request)
        if path == "/phone-number" and method == "GET":
            return self._switches("list") or self._page(self.imports, request)
        if path == "/assistant" and method == "POST":
            return self._switches("create_assistant") or self._create_assistant(request)
        if path == "/assistant" and method == "GET":
            return self._switches("list_assistants") or self._page(self.assistants, request)
        if path == "/call" and method == "GET":
            return self._switches("list_calls") or self._page(self.phone_calls, request)
        if path == "/sandbox/call" and method == "POST":
            return self._sandbox_call(request)
        match = re.fullmatch(r"/(phone-number|assistant|call)/([\w-]+)", path)
        if match:
            kind, object_id = match[1], match[2]
            if kind == "phone-number" and method == "DELETE":
                return self._switches("delete") or self._delete(object_id)
            if kind == "phone-number" and method == "GET":
                return self._switches("get_number") or self._get(self.imports, object_id)
            if kind == "phone-number" and method == "PATCH":
                return self._switches("update_number") or self._update_number(object_id, request)
            if kind == "assistant" and method == "GET":
                return self._switches("get_assistant") or self._get(self.assistants, object_id)
            if kind == "assistant" and method == "PATCH":
                return self._switches("update_assistant") or self._update_assistant(
                    object_id, request
                )
            if kind == "call" and method == "GET":
                return self._get(self.phone_calls, object_id)
        return _error(404, "Cannot find route")

    def _page(self, table: dict[str, dict], request: Request) -> Reply:
        with self.lock:
            rows = [dict(row) for row in table.values()]
        rows.reverse()  # newest first; rows of one instant keep a stable order
        rows.sort(key=lambda row: row["createdAt"], reverse=True)
        query = request.query
        for name, keep in (
            ("createdAtGe", lambda row, v: row["createdAt"] >= v),
            ("createdAtGt", lambda row, v: row["createdAt"] > v),
            ("createdAtLe", lambda row, v: row["createdAt"] <= v),
            ("createdAtLt", lambda row, v: row["createdAt"] < v),
            ("name", lambda row, v: row.get("name") == v),
            ("phoneNumberId", lambda row, v: row.get("phoneNumberId") == v),
            ("assistantId", lambda row, v: row.get("assistantId") == v),
        ):
            if name in query:
                rows = [row for row in rows if keep(row, query[name])]
        return Reply(200, rows[: int(query.get("limit", 100))])

    def _get(self, table: dict[str, dict], object_id: str) -> Reply:
        with self.lock:
            row = table.get(object_id)
            return Reply(200, dict(row)) if row else NOT_FOUND

    def _import(self, request: Request) -> Reply:
        body = request.json()
        if body.get("provider") != "twilio" or not body.get("number"):
            return _error(400, ["provider must be twilio"])
        if len(body.get("name") or "") > NAME_LIMIT:
            return _error(400, [f"name must be shorter than or equal to {NAME_LIMIT} characters"])
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
                return _error(400, "Number Not Found on Twilio.")
        with self.lock:
            if any(row["number"] == body["number"] for row in self.imports.values()):
                return _error(400, "Existing phone number")
            phone_id = str(uuid.uuid4())
            row = {
                "id": phone_id,
                "provider": "twilio",
                "number": body["number"],
                "name": body.get("name"),
                "twilioAccountSid": body.get("twilioAccountSid"),
                "assistantId": body.get("assistantId"),
                "server": body.get("server"),
                "status": "active",
                "createdAt": timestamp(),
            }
            row["updatedAt"] = row["createdAt"]
            self.imports[phone_id] = row
        return Reply(201, dict(row))

    def _update_number(self, phone_id: str, request: Request) -> Reply:
        body = request.json()
        if len(body.get("name") or "") > NAME_LIMIT:
            return _error(400, [f"name must be shorter than or equal to {NAME_LIMIT} characters"])
        with self.lock:
            row = self.imports.get(phone_id)
            if row is None:
                return NOT_FOUND
            for field in ("assistantId", "server", "name", "squadId", "workflowId"):
                if field in body:
                    row[field] = body[field]
            row["updatedAt"] = timestamp()
            return Reply(200, dict(row))

    def _delete(self, phone_id: str) -> Reply:
        with self.lock:
            row = self.imports.pop(phone_id, None)
            if row is None:
                return NOT_FOUND
            self.deleted.append(row)
        return Reply(200, row)

    def _create_assistant(self, request: Request) -> Reply:
        body = request.json()
        if len(body.get("name") or "") > NAME_LIMIT:
            return _error(400, [f"name must be shorter than or equal to {NAME_LIMIT} characters"])
        with self.lock:
            row = {**body, "id": str(uuid.uuid4()), "orgId": "sandbox-org"}
            row["createdAt"] = row["updatedAt"] = timestamp()
            self.assistants[row["id"]] = row
        return self._answer_late("create_assistant", Reply(201, dict(row)))

    def _update_assistant(self, assistant_id: str, request: Request) -> Reply:
        body = request.json()
        if len(body.get("name") or "") > NAME_LIMIT:
            return _error(400, [f"name must be shorter than or equal to {NAME_LIMIT} characters"])
        with self.lock:
            row = self.assistants.get(assistant_id)
            if row is None:
                return NOT_FOUND
            row.update({k: v for k, v in body.items() if k not in ("id", "createdAt")})
            row["updatedAt"] = timestamp()
            return Reply(200, dict(row))

    # --- A phone call, from Vapi's side --------------------------------------------------

    def number_for(self, number_or_id: str) -> dict:
        with self.lock:
            for row in self.imports.values():
                if number_or_id in (row["id"], row["number"]):
                    return dict(row)
        raise KeyError(f"no imported number {number_or_id}")

    def start_call(
        self, number_or_id: str, *, caller: str = "+447700900123", send: bool = True
    ) -> dict:
        """A caller rings an imported number. Returns the call, with `assistantRequest`: our
        server's answer to `assistant-request` (status, body), or None when not sent."""
        phone = self.number_for(number_or_id)
        now = datetime.now(UTC)
        call = {
            "id": str(uuid.uuid4()),
            "orgId": "sandbox-org",
            "type": "inboundPhoneCall",
            "phoneNumberId": phone["id"],
            "assistantId": phone.get("assistantId"),
            "customer": {"number": caller},
            "status": "ringing",
            "createdAt": timestamp(now),
            "updatedAt": timestamp(now),
        }
        with self.lock:
            self.phone_calls[call["id"]] = call
        answer = None
        if send and not (phone.get("assistantId") or phone.get("squadId")):
            message = {
                "type": "assistant-request",
                "timestamp": int(now.timestamp() * 1000),
                "call": dict(call),
                "phoneNumber": phone,
                "customer": call["customer"],
            }
            answer = self.send(phone.get("server"), message)
            status, body = answer
            with self.lock:
                if status == 200 and isinstance(body, dict) and body.get("assistantId"):
                    call["assistantId"] = body["assistantId"]
                    call["assistantOverrides"] = body.get("assistantOverrides") or {}
                    call["status"] = "in-progress"
                    call["startedAt"] = timestamp()
                else:
                    call["status"] = "ended"
                    call["endedReason"] = (
                        "assistant-request-returned-error"
                        if status == 200
                        else "assistant-request-failed"
                    )
                    call["endedAt"] = timestamp()
        elif phone.get("assistantId"):
            with self.lock:
                call["status"], call["startedAt"] = "in-progress", timestamp()
        return {**self.phone_calls[call["id"]], "assistantRequest": answer}

    def end_call(
        self,
        call_id: str,
        *,
        duration_seconds: float,
        ended_reason: str = "customer-ended-call",
        summary: str = "The caller booked a check-up for Tuesday.",
    ) -> dict:
        """The call ends `duration_seconds` after it started (times are set, not waited for)."""
        with self.lock:
            call = self.phone_calls[call_id]
            started = datetime.now(UTC) - timedelta(seconds=duration_seconds)
            call["startedAt"] = timestamp(started)
            call["endedAt"] = timestamp(started + timedelta(seconds=duration_seconds))
            call["status"] = "ended"
            call["endedReason"] = ended_reason
            call["analysis"] = {"summary": summary}
            recording = f"https://storage.vapi.ai/{call_id}-mono.wav"
            call["artifact"] = {
                "transcript": "AI: Hello, how can I help?\nUser: I'd like an appointment.",
                "recording": {"mono": {"combinedUrl": recording}},
                "recordingUrl": recording,
            }
            call["updatedAt"] = call["endedAt"]
            return dict(call)

    def report(self, call_id: str) -> dict:
        """The `end-of-call-report` message for an ended call."""
        with self.lock:
            call = dict(self.phone_calls[call_id])
        return {
            "type": "end-of-call-report",
            "timestamp": int(time.time() * 1000),
            "endedReason": call.get("endedReason"),
            "startedAt": call.get("startedAt"),
            "endedAt": call.get("endedAt"),
            "call": call,
            "phoneNumber": self.number_for(call["phoneNumberId"]),
            "customer": call.get("customer"),
            "artifact": call.get("artifact", {}),
            "analysis": call.get("analysis", {}),
            "recordingUrl": call.get("artifact", {}).get("recordingUrl"),
            "summary": call.get("analysis", {}).get("summary"),
        }

    def status_update(self, call_id: str, status: str) -> dict:
        with self.lock:
            call = dict(self.phone_calls[call_id])
        return {
            "type": "status-update",
            "status": status,
            "timestamp": int(time.time() * 1000),
            "call": call,
            "phoneNumber": self.number_for(call["phoneNumberId"]),
        }

    def server_for_call(self, call_id: str) -> dict | None:
        """Where Vapi sends a call's messages: its assistant's server, else its number's."""
        with self.lock:
            call = self.phone_calls[call_id]
            assistant = self.assistants.get(call.get("assistantId") or "", {})
            phone = self.imports.get(call["phoneNumberId"], {})
            return assistant.get("server") or phone.get("server")

    def wants(self, call_id: str, message_type: str) -> bool:
        """Whether the call's assistant lists `message_type` in its serverMessages."""
        with self.lock:
            call = self.phone_calls[call_id]
            assistant = self.assistants.get(call.get("assistantId") or "", {})
        return message_type in (assistant.get("serverMessages") or [])

    def deliver_report(self, call_id: str, *, times: int = 1) -> list[tuple[int, object]]:
        """Send the call's end-of-call-report `times` times (Vapi sends it once, never
        retries, and only if the assistant asked for it: [] then)."""
        if not self.wants(call_id, "end-of-call-report"):
            return []
        message = self.report(call_id)
        server = self.server_for_call(call_id)
        return [self.send(server, message) for _ in range(times)]

    def send(
        self, server: dict | None, message: dict, *, timeout: float = 20.0
    ) -> tuple[int, object]:
        """POST `{"message": ...}` to a server config ({url, headers}); (status, JSON body).
        No server URL, or the server unreachable: (0, reason)."""
        if not server or not server.get("url"):
            return 0, "no server url"
        data = json.dumps({"message": message}).encode()
        headers = {"Content-Type": "application/json", **(server.get("headers") or {})}
        request = urllib.request.Request(server["url"], data=data, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return response.status, _body(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, _body(exc.read())
        except (OSError, TimeoutError) as exc:
            return 0, f"{type(exc).__name__}: {exc}"

    def _sandbox_call(self, request: Request) -> Reply:
        """A whole call for `make run`: ring, talk for durationSeconds, report once."""
        body = request.json()
        try:
            call = self.start_call(
                body.get("number") or body.get("phoneNumberId") or "",
                caller=body.get("customerNumber") or "+447700900123",
            )
        except KeyError as exc:
            return _error(404, str(exc))
        answer = call.pop("assistantRequest")
        if call["status"] != "in-progress":
            return Reply(200, {"call": call, "assistantRequest": answer, "report": None})
        seconds = min(
            float(body.get("durationSeconds") or 90),
            float(call.get("assistantOverrides", {}).get("maxDurationSeconds") or 600),
        )
        ended = self.end_call(call["id"], duration_seconds=seconds)
        reports = self.deliver_report(call["id"])
        return Reply(
            200,
            {"call": ended, "assistantRequest": answer, "report": reports[0] if reports else None},
        )


def _body(raw: bytes) -> object:
    try:
        return json.loads(raw or b"null")
    except ValueError:
        return raw.decode(errors="replace")
