"""A local Twilio-compatible HTTP server for integration tests.

Implements ``POST /2010-04-01/Accounts/{AccountSid}/Messages.json`` (form-encoded
``To``/``From``/``Body``, HTTP Basic auth checked against the configured SID and token)
and answers like Twilio: 201 with a message resource whose ``sid`` is ``SM`` + 32 hex,
or an error document ``{"code", "message", "more_info", "status"}``.

Scriptable faults, consumed in order, one per request (before auth is checked; error
faults also by look-ups):

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

Reading back (delivery receipts by polling): ``GET …/Messages/{MessageSid}.json`` answers
the message with its current status (404, Twilio code 20404, for an unknown SID), and
``GET …/Messages.json`` lists messages filtered by ``To``, ``From`` and ``DateSent``
(``YYYY-MM-DD``, GMT; one page of at most ``PageSize``), newest first, as Twilio does.
A message starts ``queued`` and is ``sent`` on creation (``date_sent`` is set);
``set_status(sid, status, error_code=None)`` moves it on (what a fetch or list then says).

Webhooks, signed with the auth token by the client library's ``RequestValidator`` over
the URL Twilio was given (``X-Twilio-Signature``), sent with ``requests`` — or through
``via`` (anything with ``.post(url, data=, headers=)``, e.g. a FastAPI ``TestClient``):

- ``post_status(sid, status, error_code=None)`` — the status callback of one message to the
  ``StatusCallback`` it was created with (or ``url``); ``to_url`` sends it elsewhere while
  signing the given URL (a proxy in front of the application); ``signature`` overrides
  the header (``""``: unsigned). ``post_statuses(sid, ["sent", "delivered", "sent"])``
  replays a sequence (out of order, repeated). ``undelivered`` / ``failed`` carry
  ``ErrorCode`` (30003 unreachable, 30005 unknown number, 30006 landline…).
- ``post_inbound(url, from_, to, body)`` — an inbound SMS webhook (``MessageSid``,
  ``From``, ``To``, ``Body``…), e.g. a reply to ``/twilio/inbound``.
- ``post_signed(url, params)`` — any signed webhook.

Use the ``twilio_server`` pytest fixture, or ``with TwilioTestServer() as server:``.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import threading
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

import pytest
import requests
from twilio.request_validator import RequestValidator

TEST_ACCOUNT_SID = "AC" + "0" * 31 + "1"
TEST_AUTH_TOKEN = "test-token-0123456789abcdef"  # a throwaway value for the local server only
TEST_FROM = "+34600000099"

_PATH_RE = re.compile(r"^/2010-04-01/Accounts/([A-Za-z0-9]+)/Messages\.json$")
_ONE_RE = re.compile(r"^/2010-04-01/Accounts/([A-Za-z0-9]+)/Messages/([A-Za-z0-9]+)\.json$")
#: statuses with an ErrorCode in Twilio's callbacks
_ERRORS = frozenset({"undelivered", "failed"})
_E164_RE = re.compile(r"^\+[1-9]\d{1,14}$")


@dataclass(frozen=True)
class ReceivedSms:
    sid: str
    account_sid: str
    to: str
    from_: str
    body: str
    received_at: datetime
    status_callback: str | None = None


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
    #: sid → (status, error code)
    statuses: dict[str, tuple[str, int | None]] = field(default_factory=dict)
    #: the server's clock (a test's FixedClock.now keeps dates in its world)
    now: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))


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
        state = self.server.state
        path, _, query = self.path.partition("?")
        params = {k: v[0] for k, v in parse_qs(query, keep_blank_values=True).items()}
        status = self._get(state, path, params)
        with state.lock:
            state.requests.append(RequestRecord("GET", self.path, status, params))

    def _get(self, state: _State, path: str, params: dict[str, str]) -> int:
        with state.lock:  # error faults apply to look-ups as well
            fault = (state.faults.popleft() if state.faults and state.faults[0].kind == "error"
                     else None)
        if fault is not None:
            self._reply(fault.status, _error_doc(fault.status, fault.code, "Injected fault"))
            return fault.status
        one, many = _ONE_RE.match(path), _PATH_RE.match(path)
        match = one or many
        if match is None:
            self._reply(404, _error_doc(404, 20404, "The requested resource was not found"))
            return 404
        if not self._authorised(state, match.group(1)):
            self._reply(401, _error_doc(401, 20003, "Authenticate"))
            return 401
        with state.lock:
            messages = list(state.messages)
            statuses = dict(state.statuses)
        if one is not None:
            found = next((m for m in messages if m.sid == one.group(2)), None)
            if found is None:
                self._reply(404, _error_doc(404, 20404, "The requested resource was not found"))
                return 404
            self._reply(200, self._resource(found, statuses.get(found.sid)))
            return 200
        day = params.get("DateSent", "")[:10]
        chosen = [m for m in reversed(messages)
                  if params.get("To", m.to) == m.to and params.get("From", m.from_) == m.from_
                  and (not day or m.received_at.date().isoformat() == day)]
        size = max(1, min(1000, int(params.get("PageSize") or 50)))
        uri = path + "?" + "&".join(f"{k}={v}" for k, v in sorted(params.items()))
        self._reply(200, {
            "messages": [self._resource(m, statuses.get(m.sid)) for m in chosen[:size]],
            "end": min(size, len(chosen)) - 1, "first_page_uri": uri, "next_page_uri": None,
            "page": 0, "page_size": size, "previous_page_uri": None, "start": 0, "uri": uri})
        return 200

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
                          from_=from_, body=body, received_at=state.now(),
                          status_callback=form.get("StatusCallback") or None)
        with state.lock:
            state.messages.append(sms)
            state.statuses[sms.sid] = ("sent", None)
        if fault is not None and fault.kind == "drop":
            self.close_connection = True
            self.connection.shutdown(2)  # SHUT_RDWR: the client sees the connection end
            return 0
        if fault is not None and fault.kind == "delay" and state.stopping.wait(fault.seconds):
            return 0
        self._reply(201, self._resource(sms, ("queued", None)))
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
    def _resource(sms: ReceivedSms, status: tuple[str, int | None] | None = None
                  ) -> dict[str, Any]:
        created = format_datetime(sms.received_at, usegmt=True)
        uri = f"/2010-04-01/Accounts/{sms.account_sid}/Messages/{sms.sid}"
        state, code = status or ("queued", None)
        return {
            "account_sid": sms.account_sid, "api_version": "2010-04-01", "body": sms.body,
            "date_created": created, "date_sent": None if state == "queued" else created,
            "date_updated": created, "direction": "outbound-api", "error_code": code,
            "error_message": None, "from": sms.from_, "messaging_service_sid": None,
            "num_media": "0", "num_segments": "1", "price": None, "price_unit": "USD",
            "sid": sms.sid, "status": state, "to": sms.to, "uri": uri + ".json",
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

    def message(self, sid: str) -> ReceivedSms:
        found = next((m for m in self.messages if m.sid == sid), None)
        if found is None:
            raise KeyError(sid)
        return found

    def use_clock(self, now: Callable[[], datetime]) -> None:
        """Stamp new messages with ``now()`` (a test's clock) instead of the real time."""
        self._state.now = now

    def lose(self, sid: str) -> None:
        """Forget a message, as if Twilio never had it (an unknown outcome that was not)."""
        with self._state.lock:
            self._state.messages = [m for m in self._state.messages if m.sid != sid]
            self._state.statuses.pop(sid, None)

    # message status (what fetch and list answer)
    def set_status(self, sid: str, status: str, error_code: int | None = None) -> None:
        self.message(sid)
        with self._state.lock:
            self._state.statuses[sid] = (status, error_code)

    def status_of(self, sid: str) -> tuple[str, int | None]:
        with self._state.lock:
            return self._state.statuses[sid]

    # webhooks
    def sign(self, url: str, params: Mapping[str, str]) -> str:
        """``X-Twilio-Signature`` of a POST of ``params`` to ``url`` (the library's own)."""
        return str(RequestValidator(self.auth_token).compute_signature(url, dict(params)))

    def post_signed(self, url: str, params: Mapping[str, str], *, to_url: str | None = None,
                    via: Any = None, signature: str | None = None) -> int:
        """POST ``params`` form-encoded, signed for ``url``, to ``to_url`` (default
        ``url``); returns the HTTP status. ``signature=""`` sends no signature."""
        sig = self.sign(url, params) if signature is None else signature
        headers = {"X-Twilio-Signature": sig} if sig else {}
        target = to_url or url
        if via is not None:
            return int(via.post(target, data=dict(params), headers=headers).status_code)
        return int(requests.post(target, data=dict(params), headers=headers,
                                 timeout=10).status_code)

    def status_params(self, sid: str, status: str, error_code: int | None = None
                      ) -> dict[str, str]:
        """The form of Twilio's status callback for ``sid`` at ``status``."""
        sms = self.message(sid)
        params = {"MessageSid": sid, "SmsSid": sid, "AccountSid": self.account_sid,
                  "From": sms.from_, "To": sms.to, "MessageStatus": status,
                  "SmsStatus": status, "ApiVersion": "2010-04-01"}
        if status in _ERRORS:
            params["ErrorCode"] = str(error_code if error_code is not None else 30008)
        return params

    def post_status(self, sid: str, status: str, error_code: int | None = None, *,
                    url: str | None = None, to_url: str | None = None, via: Any = None,
                    signature: str | None = None, update: bool = True) -> int:
        """Twilio's status callback for ``sid`` (and, with ``update``, what a fetch says
        from now on when ``status`` ranks higher): to the message's ``StatusCallback``
        unless ``url`` is given."""
        target = url or self.message(sid).status_callback
        if not target:
            raise ValueError(f"message {sid} was sent without a StatusCallback: pass url=")
        if update:
            order = ("queued", "sending", "sent")
            current = self.status_of(sid)[0]
            if current in order and (status not in order
                                     or order.index(status) > order.index(current)):
                self.set_status(sid, status, error_code if status in _ERRORS else None)
        return self.post_signed(target, self.status_params(sid, status, error_code),
                                to_url=to_url, via=via, signature=signature)

    def post_statuses(self, sid: str, statuses: Sequence[str | tuple[str, int]], **kwargs: Any
                      ) -> list[int]:
        """Several callbacks in this order (``("undelivered", 30003)`` for a code)."""
        out = []
        for item in statuses:
            status, code = (item, None) if isinstance(item, str) else item
            out.append(self.post_status(sid, status, code, **kwargs))
        return out

    def post_inbound(self, url: str, from_: str, to: str, body: str, *,
                     to_url: str | None = None, via: Any = None,
                     signature: str | None = None) -> int:
        """An inbound SMS (a reply) as Twilio posts it to the number's webhook."""
        sid = "SM" + secrets.token_hex(16)
        params = {"MessageSid": sid, "SmsSid": sid, "SmsMessageSid": sid,
                  "AccountSid": self.account_sid, "From": from_, "To": to, "Body": body,
                  "NumMedia": "0", "NumSegments": "1", "SmsStatus": "received",
                  "ApiVersion": "2010-04-01"}
        return self.post_signed(url, params, to_url=to_url, via=via, signature=signature)


@pytest.fixture
def twilio_server() -> Iterator[TwilioTestServer]:
    """A started :class:`TwilioTestServer` (stopped after the test)."""
    with TwilioTestServer() as server:
        yield server
