"""A local Twilio-compatible HTTP server for integration tests.

Implements ``POST /2010-04-01/Accounts/{AccountSid}/Messages.json`` (form-encoded
``To``/``From``/``Body``, HTTP Basic auth checked against the configured SID and token)
and answers like Twilio: 201 with a message resource whose ``sid`` is ``SM`` + 32 hex,
or an error document ``{"code", "message", "more_info", "status"}``.

Scriptable faults, consumed in order, one per request (before auth is checked):

- ``fail_next(n, status=500, code=None, html=None)`` — the next ``n`` requests get that
  error (a Twilio JSON error document, or ``html`` as a proxy would answer);
- ``throttle_next(n)`` — 429 with Twilio code 20429;
- ``delay_next(n, seconds)`` — answer normally but only after ``seconds`` (the message *is*
  recorded first, as Twilio would have created it): provokes client read timeouts;
- ``drop_next(n)`` — read the request, record the message, then close the connection
  without answering (a connection reset after the body was sent).

Persistent rules: ``reject(to_number, code=21610, status=400)`` refuses one recipient;
an invalid ``To`` gets Twilio's 21211. ``messages`` holds the accepted messages (thread
safe), ``requests`` every request; ``count(to=..., body=...)`` helps exactly-once checks.

Use the ``twilio_server`` pytest fixture, or ``with TwilioTestServer() as server:``.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import threading
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

import pytest

TEST_ACCOUNT_SID = "AC" + "0" * 31 + "1"
TEST_AUTH_TOKEN = "test-token-0123456789abcdef"  # a throwaway value for the local server only
TEST_FROM = "+34600000099"

_PATH_RE = re.compile(r"^/2010-04-01/Accounts/([A-Za-z0-9]+)/Messages\.json$")
_E164_RE = re.compile(r"^\+[1-9]\d{1,14}$")


@dataclass(frozen=True)
class ReceivedSms:
    sid: str
    account_sid: str
    to: str
    from_: str
    body: str
    received_at: datetime


@dataclass(frozen=True)
class RequestRecord:
    method: str
    path: str
    status: int  # 0 when the connection was dropped without an answer
    form: dict[str, str]


@dataclass
class _Fault:
    kind: str  # "error" | "delay" | "drop"
    status: int = 500
    code: int | None = None
    seconds: float = 0.0
    html: str | None = None


@dataclass
class _State:
    account_sid: str
    auth_token: str
    lock: threading.Lock = field(default_factory=threading.Lock)
    faults: deque[_Fault] = field(default_factory=deque)
    rejects: dict[str, tuple[int, int]] = field(default_factory=dict)
    messages: list[ReceivedSms] = field(default_factory=list)
    requests: list[RequestRecord] = field(default_factory=list)
    stopping: threading.Event = field(default_factory=threading.Event)


def _error_doc(status: int, code: int | None, message: str) -> dict[str, Any]:
    return {"code": code, "message": message,
            "more_info": f"https://www.twilio.com/docs/errors/{code}" if code else None,
            "status": status}


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.0"  # one request per connection: no stale keep-alive

    def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
        pass

    def _reply(self, status: int, payload: dict[str, Any]) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        try:
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (a killed worker, a timeout test): nothing to tell

    def do_GET(self) -> None:
        self._reply(405, _error_doc(405, 20004, "Method not allowed"))

    def do_POST(self) -> None:
        state = self.server.state
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length).decode()
        form = {k: v[0] for k, v in parse_qs(raw, keep_blank_values=True).items()}
        status = self._handle(state, form)
        with state.lock:
            state.requests.append(RequestRecord("POST", self.path, status, form))

    def _handle(self, state: _State, form: dict[str, str]) -> int:
        with state.lock:
            fault = state.faults.popleft() if state.faults else None
        if fault is not None and fault.kind == "error" and fault.html is not None:
            raw = fault.html.encode()
            self.send_response(fault.status)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)
            return fault.status
        if fault is not None and fault.kind == "error":
            message = "Too Many Requests" if fault.status == 429 else "Injected fault"
            self._reply(fault.status, _error_doc(fault.status, fault.code, message))
            return fault.status
        match = _PATH_RE.match(self.path)
        if not match:
            self._reply(404, _error_doc(404, 20404, "The requested resource was not found"))
            return 404
        if not self._authorised(state, match.group(1)):
            self._reply(401, _error_doc(401, 20003, "Authenticate"))
            return 401
        to, from_, body = form.get("To", ""), form.get("From", ""), form.get("Body", "")
        if not to:
            self._reply(400, _error_doc(400, 21604, "A 'To' phone number is required."))
            return 400
        if not _E164_RE.match(to):
            self._reply(400, _error_doc(400, 21211, "The 'To' number is not a valid phone number."))
            return 400
        if not body:
            self._reply(400, _error_doc(400, 21602, "Message body is required."))
            return 400
        with state.lock:
            rejected = state.rejects.get(to)
        if rejected is not None:
            status, code = rejected
            self._reply(status, _error_doc(status, code, "Injected rejection"))
            return status
        sms = ReceivedSms(sid="SM" + secrets.token_hex(16), account_sid=match.group(1), to=to,
                          from_=from_, body=body, received_at=datetime.now(UTC))
        with state.lock:
            state.messages.append(sms)
        if fault is not None and fault.kind == "drop":
            self.close_connection = True
            self.connection.shutdown(2)  # SHUT_RDWR: the client sees the connection end
            return 0
        if fault is not None and fault.kind == "delay" and state.stopping.wait(fault.seconds):
            return 0
        self._reply(201, self._resource(sms))
        return 201

    def _authorised(self, state: _State, path_sid: str) -> bool:
        header = self.headers.get("Authorization", "")
        if not header.startswith("Basic "):
            return False
        try:
            user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return False
        return (secrets.compare_digest(user, state.account_sid)
                and secrets.compare_digest(password, state.auth_token)
                and path_sid == state.account_sid)

    @staticmethod
    def _resource(sms: ReceivedSms) -> dict[str, Any]:
        created = format_datetime(sms.received_at, usegmt=True)
        uri = f"/2010-04-01/Accounts/{sms.account_sid}/Messages/{sms.sid}"
        return {
            "account_sid": sms.account_sid, "api_version": "2010-04-01", "body": sms.body,
            "date_created": created, "date_sent": None, "date_updated": created,
            "direction": "outbound-api", "error_code": None, "error_message": None,
            "from": sms.from_, "messaging_service_sid": None, "num_media": "0",
            "num_segments": "1", "price": None, "price_unit": "USD", "sid": sms.sid,
            "status": "queued", "to": sms.to, "uri": uri + ".json",
            "subresource_uris": {"media": uri + "/Media.json"},
        }


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, state: _State) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.state = state


class TwilioTestServer:
    """The server, its fault plan and its records. ``base_url`` is ``http://127.0.0.1:PORT``."""

    def __init__(self, account_sid: str = TEST_ACCOUNT_SID,
                 auth_token: str = TEST_AUTH_TOKEN) -> None:
        self.account_sid = account_sid
        self.auth_token = auth_token
        self._state = _State(account_sid, auth_token)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # lifecycle
    def start(self) -> TwilioTestServer:
        self._server = _Server(self._state)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
            name="twilio-test-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._state.stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server, self._thread = None, None

    def __enter__(self) -> TwilioTestServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._server is not None, "server not started"
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # fault plan
    def fail_next(self, n: int = 1, *, status: int = 500, code: int | None = None,
                  html: str | None = None) -> None:
        """The next ``n`` requests get ``status`` with a Twilio error document, or with
        ``html`` as a text/html body (what a proxy or load balancer would answer)."""
        with self._state.lock:
            self._state.faults.extend(
                _Fault("error", status=status, code=code, html=html) for _ in range(n))

    def throttle_next(self, n: int = 1) -> None:
        self.fail_next(n, status=429, code=20429)

    def delay_next(self, n: int = 1, *, seconds: float = 2.0) -> None:
        with self._state.lock:
            self._state.faults.extend(_Fault("delay", seconds=seconds) for _ in range(n))

    def drop_next(self, n: int = 1) -> None:
        with self._state.lock:
            self._state.faults.extend(_Fault("drop") for _ in range(n))

    def reject(self, to_number: str, *, code: int = 21610, status: int = 400) -> None:
        with self._state.lock:
            self._state.rejects[to_number] = (status, code)

    def clear_faults(self) -> None:
        with self._state.lock:
            self._state.faults.clear()
            self._state.rejects.clear()

    # records
    @property
    def messages(self) -> list[ReceivedSms]:
        with self._state.lock:
            return list(self._state.messages)

    @property
    def requests(self) -> list[RequestRecord]:
        with self._state.lock:
            return list(self._state.requests)

    def count(self, *, to: str | None = None, body: str | None = None) -> int:
        return sum(1 for m in self.messages
                   if (to is None or m.to == to) and (body is None or m.body == body))


@pytest.fixture
def twilio_server() -> Iterator[TwilioTestServer]:
    """A started :class:`TwilioTestServer` (stopped after the test)."""
    with TwilioTestServer() as server:
        yield server
