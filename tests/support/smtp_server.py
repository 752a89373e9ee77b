"""A real local SMTP server (aiosmtpd) for integration tests.

:class:`SmtpTestServer` listens on 127.0.0.1 on a free port, records every accepted
message, and can be scripted:

- ``answer_data_next(n, "451 4.3.0 Try again later")`` — the next ``n`` DATA commands get
  that final reply (a non-2xx reply means the message is *not* recorded);
- ``refuse_recipient(address, "550 5.1.1 No such user")`` — RCPT TO that address fails
  (any reply, e.g. ``"450 4.2.1 Mailbox busy"``);
- ``delay_data_next(n, seconds)`` — record the message, then wait before answering DATA
  (provokes a client timeout during DATA: unknown outcome);
- ``stop()`` / ``start()`` / ``restart()`` — the same port every time (a new controller
  each start), for "mail server down for a while" tests.

``SmtpTestServer(username=..., password=...)`` offers AUTH PLAIN/LOGIN without TLS (a
local test only) and refuses wrong credentials with 535.

Fixtures: ``smtp_server`` and ``smtp_auth_server`` (credentials ``alerts`` / ``s3cret-test``).
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default as default_policy
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

TEST_SMTP_USER = "alerts"
TEST_SMTP_PASSWORD = "s3cret-test"  # a throwaway value for the local server only


@dataclass(frozen=True)
class ReceivedMail:
    mail_from: str
    rcpt_tos: tuple[str, ...]
    message: EmailMessage

    @property
    def message_id(self) -> str:
        return str(self.message["Message-ID"])

    @property
    def subject(self) -> str:
        return str(self.message["Subject"])

    @property
    def body(self) -> str:
        """The plain-text body with the wire's CRLF line ends turned back into ``\\n``."""
        part = self.message.get_body(preferencelist=("plain",))
        text = part.get_content() if part is not None else ""
        return str(text).replace("\r\n", "\n")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RecordingHandler:
    """aiosmtpd handler: records messages, answers as scripted."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.messages: list[ReceivedMail] = []
        self.data_replies: deque[str] = deque()
        self.data_delays: deque[float] = deque()
        self.refused: dict[str, str] = {}
        self.data_commands = 0

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, rcpt_options: list[str]) -> str:
        with self.lock:
            refusal = self.refused.get(address)
        if refusal is not None:
            return refusal
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        with self.lock:
            self.data_commands += 1
            reply = self.data_replies.popleft() if self.data_replies else None
            delay = self.data_delays.popleft() if self.data_delays else 0.0
        if reply is not None and not reply.startswith("2"):
            return reply
        content = envelope.content if isinstance(envelope.content, bytes) else b""
        parsed = message_from_bytes(content, policy=default_policy)
        assert isinstance(parsed, EmailMessage)
        mail = ReceivedMail(mail_from=str(envelope.mail_from),
                            rcpt_tos=tuple(envelope.rcpt_tos), message=parsed)
        with self.lock:
            self.messages.append(mail)
        if delay:
            await asyncio.sleep(delay)
        return reply or "250 Message accepted for delivery"


class SmtpTestServer:
    def __init__(self, *, port: int | None = None, username: str | None = None,
                 password: str | None = None) -> None:
        self.host = "127.0.0.1"
        self.port = port or free_port()
        self.handler = RecordingHandler()
        self._credentials = (username, password) if username is not None else None
        self._controller: Controller | None = None

    def _authenticate(self, server: SMTP, session: Session, envelope: Envelope,
                      mechanism: str, auth_data: Any) -> AuthResult:
        assert self._credentials is not None
        if isinstance(auth_data, LoginPassword):
            user, password = self._credentials
            if (auth_data.login.decode(), auth_data.password.decode()) == (user, password):
                return AuthResult(success=True)
        return AuthResult(success=False, handled=False)

    # lifecycle
    def start(self) -> SmtpTestServer:
        assert self._controller is None, "already running"
        kwargs: dict[str, Any] = {}
        if self._credentials is not None:
            kwargs.update(authenticator=self._authenticate, auth_require_tls=False)
        controller = Controller(self.handler, hostname=self.host, port=self.port, **kwargs)
        controller.start()
        self._controller = controller
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def restart(self) -> None:
        self.stop()
        self.start()

    @property
    def running(self) -> bool:
        return self._controller is not None

    def __enter__(self) -> SmtpTestServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # script
    def answer_data_next(self, n: int = 1, reply: str = "451 4.3.0 Try again later") -> None:
        with self.handler.lock:
            self.handler.data_replies.extend([reply] * n)

    def delay_data_next(self, n: int = 1, *, seconds: float = 2.0) -> None:
        with self.handler.lock:
            self.handler.data_delays.extend([seconds] * n)

    def refuse_recipient(self, address: str, reply: str = "550 5.1.1 No such user") -> None:
        with self.handler.lock:
            self.handler.refused[address] = reply

    # records
    @property
    def messages(self) -> list[ReceivedMail]:
        with self.handler.lock:
            return list(self.handler.messages)

    def count(self, *, message_id: str | None = None, to: str | None = None) -> int:
        return sum(1 for m in self.messages
                   if (message_id is None or m.message_id == message_id)
                   and (to is None or to in m.rcpt_tos))


@pytest.fixture
def smtp_server() -> Iterator[SmtpTestServer]:
    """A started plain SMTP server on 127.0.0.1 (stopped after the test)."""
    with SmtpTestServer() as server:
        yield server


@pytest.fixture
def smtp_auth_server() -> Iterator[SmtpTestServer]:
    """A started SMTP server requiring nothing but offering AUTH with the test credentials."""
    with SmtpTestServer(username=TEST_SMTP_USER, password=TEST_SMTP_PASSWORD) as server:
        yield server
