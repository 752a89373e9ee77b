"""E-mail through an SMTP relay with :mod:`smtplib`: one plain-text message per send.

The ``Message-ID`` is derived from the alert id, the message purpose and the staff id
(``<alert-id.alert.staff-id@sender-domain>``), so a repeated delivery of the same alert
to the same person carries the same id and is recognisable (mail clients and the worker's
records can collapse it). It is returned as ``provider_id``.

The session is driven step by step (``MAIL``, ``RCPT``, ``DATA``) so that a failure can
be placed before or after the message left this process:

- SMTP reply 4xx anywhere → :class:`TransientDeliveryError`; 5xx (recipient refused,
  message rejected, authentication failed) → :class:`PermanentDeliveryError`; ``code`` is
  the SMTP reply code.
- Connection refused, DNS failure, timeout or disconnect before ``DATA`` → transient.
- Timeout, disconnect or socket error during ``DATA`` (the body may have been accepted)
  → :class:`UnknownOutcomeError`.
- 535 to AUTH (credentials refused) → :class:`ChannelUnavailableError` (the channel is down).
- No STARTTLS / AUTH support, untrusted TLS certificate → permanent (configuration).

The password is a :class:`pydantic.SecretStr`; reasons never carry it, nor the addresses
or the body.
"""

from __future__ import annotations

import logging
import re
import smtplib
import socket
import ssl
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from email.utils import formatdate
from typing import Literal

from pydantic import SecretStr

from alerts.channels.base import DeliveryReceipt, Message, Recipient, is_address
from alerts.errors import (
    ChannelUnavailableError,
    DeliveryError,
    PermanentDeliveryError,
    TransientDeliveryError,
    UnknownOutcomeError,
)
from alerts.vocabulary import MessageKind

log = logging.getLogger(__name__)

CHANNEL = "email"
Security = Literal["none", "starttls", "ssl"]
Phase = Literal["connect", "envelope", "data"]

#: SMTP replies to AUTH meaning "these credentials are refused": the channel is down
CREDENTIAL_CODES: frozenset[int] = frozenset({535})
_UNSAFE_ID_CHARS = re.compile(r"[^A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]")


def message_id_for(message: Message, recipient: Recipient, sender: str) -> str:
    """``<{alert_id}.{purpose}.{staff_id}@{sender domain}>`` — stable for a repeat.

    ``purpose`` is ``digest`` or ``escalation`` for those kinds and ``alert`` otherwise (the
    clinical kind is never put in a header).
    """
    purpose = message.kind if message.kind in tuple(MessageKind) else "alert"
    local = ".".join(
        _UNSAFE_ID_CHARS.sub("-", part).strip(".") or "x"
        for part in (str(message.alert_id), purpose, recipient.staff_id))
    domain = sender.rpartition("@")[2] or "localhost"
    return f"<{local}@{domain}>"


def _from_reply(code: int, phase: Phase, what: str) -> DeliveryError:
    if 400 <= code < 500:
        return TransientDeliveryError(
            f"mail server deferred {what} (SMTP {code})", code=code, channel=CHANNEL)
    if 500 <= code < 600:
        return PermanentDeliveryError(
            f"mail server refused {what} (SMTP {code})", code=code, channel=CHANNEL)
    if phase == "data":
        return UnknownOutcomeError(
            f"unexpected mail server answer during DATA (SMTP {code})", code=code,
            channel=CHANNEL)
    return TransientDeliveryError(
        f"unexpected mail server answer to {what} (SMTP {code})", code=code, channel=CHANNEL)


class SmtpEmailChannel:
    """Send :attr:`Message.subject` / :attr:`Message.email_text` by SMTP.

    :param host, port: the relay.
    :param sender: the envelope and ``From`` address.
    :param username, password: for ``AUTH`` (both or neither).
    :param security: ``"none"`` (plain, tests and local relays), ``"starttls"`` or ``"ssl"``.
    :param timeout: seconds for connecting and for each server answer.
    :param ssl_context: TLS context (default: :func:`ssl.create_default_context`).

    Nothing touches the network until :meth:`send`; each send opens its own session.
    """

    name = CHANNEL

    def __init__(
        self,
        host: str,
        port: int,
        *,
        sender: str,
        username: str | None = None,
        password: SecretStr | str | None = None,
        security: Security = "starttls",
        timeout: float = 10,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        if not host:
            raise ValueError("an SMTP host is required")
        if not 0 < port < 65536:
            raise ValueError("the SMTP port must be between 1 and 65535")
        if not is_address(sender):
            raise ValueError("the sender must be a plain address like alerts@example.org")
        if security not in ("none", "starttls", "ssl"):
            raise ValueError("security must be 'none', 'starttls' or 'ssl'")
        if (username is None) != (password is None):
            raise ValueError("pass both username and password, or neither")
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        self.host = host
        self.port = port
        self.sender = sender
        self.username = username
        self._password = (password if isinstance(password, SecretStr) or password is None
                          else SecretStr(password))
        self.security: Security = security
        self.timeout = float(timeout)
        self._ssl_context = ssl_context

    def __repr__(self) -> str:
        return (f"SmtpEmailChannel(host={self.host!r}, port={self.port}, "
                f"security={self.security!r}, auth={self.username is not None})")

    def build(self, message: Message, recipient: Recipient) -> EmailMessage:
        """The e-mail that :meth:`send` transmits (exposed for inspection and tests)."""
        email = EmailMessage()
        email["From"] = self.sender
        email["To"] = recipient.email or ""
        email["Subject"] = message.subject
        email["Date"] = formatdate(usegmt=True)
        email["Message-ID"] = message_id_for(message, recipient, self.sender)
        email["Auto-Submitted"] = "auto-generated"
        email["X-Auto-Response-Suppress"] = "All"
        email.set_content(message.email_text)
        return email

    def _context(self) -> ssl.SSLContext:
        if self._ssl_context is None:
            self._ssl_context = ssl.create_default_context()
        return self._ssl_context

    def _open(self) -> smtplib.SMTP:
        if self.security == "ssl":
            return smtplib.SMTP_SSL(
                self.host, self.port, timeout=self.timeout, context=self._context())
        smtp = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
        try:
            smtp.ehlo_or_helo_if_needed()
            if self.security == "starttls":
                smtp.starttls(context=self._context())
                smtp.ehlo()
        except BaseException:
            smtp.close()
            raise
        return smtp

    def send(self, message: Message, recipient: Recipient) -> DeliveryReceipt:
        """Send one e-mail; returns its ``Message-ID`` or raises a delivery error."""
        if not recipient.email:
            raise PermanentDeliveryError(
                f"staff {recipient.staff_id!r} has no e-mail address", channel=CHANNEL)
        if not is_address(recipient.email):
            raise PermanentDeliveryError(
                f"staff {recipient.staff_id!r} has an invalid e-mail address", channel=CHANNEL)
        email = self.build(message, recipient)
        message_id = str(email["Message-ID"])
        payload = email.as_bytes(policy=SMTP_POLICY)
        phase: Phase = "connect"
        smtp: smtplib.SMTP | None = None
        delivered = False
        try:
            smtp = self._open()
            if self.username is not None and self._password is not None:
                smtp.login(self.username, self._password.get_secret_value())
            phase = "envelope"
            code, _ = smtp.mail(self.sender)
            if code != 250:
                raise _from_reply(code, phase, "the sender")
            code, _ = smtp.rcpt(recipient.email)
            if code not in (250, 251):
                raise _from_reply(code, phase, "the recipient")
            phase = "data"
            code, _ = smtp.data(payload)
            if code != 250:
                raise _from_reply(code, phase, "the message")
            delivered = True
        except DeliveryError:
            raise
        except smtplib.SMTPDataError as exc:  # DATA itself refused: the body was not sent
            raise _from_reply(exc.smtp_code, "envelope", "the message") from None
        except smtplib.SMTPAuthenticationError as exc:
            if exc.smtp_code in CREDENTIAL_CODES:
                raise ChannelUnavailableError(
                    f"mail server refused the login (SMTP {exc.smtp_code}): check "
                    "CNO_TRACKER_SMTP_USERNAME and CNO_TRACKER_SMTP_PASSWORD",
                    code=exc.smtp_code, channel=CHANNEL) from None
            raise _from_reply(exc.smtp_code, phase, "the login") from None
        except smtplib.SMTPResponseException as exc:  # incl. SMTPConnectError (greeting)
            raise _from_reply(exc.smtp_code, phase, "the connection") from None
        except smtplib.SMTPNotSupportedError:
            raise PermanentDeliveryError(
                "mail server does not support STARTTLS or AUTH as configured",
                channel=CHANNEL) from None
        except ssl.SSLCertVerificationError:
            raise PermanentDeliveryError(
                "mail server TLS certificate is not trusted", channel=CHANNEL) from None
        except (smtplib.SMTPServerDisconnected, OSError, smtplib.SMTPException) as exc:
            raise self._network_error(exc, phase) from None
        finally:
            if smtp is not None:
                _finish(smtp, polite=delivered)
        log.info("email sent: alert %s to staff %s, %s",
                 message.alert_id, recipient.staff_id, message_id)
        return DeliveryReceipt(provider_id=message_id, channel=CHANNEL)

    def _network_error(self, exc: BaseException, phase: Phase) -> DeliveryError:
        kind = type(exc).__name__
        if phase == "data":
            return UnknownOutcomeError(
                f"mail server connection failed during DATA ({kind})", channel=CHANNEL)
        if isinstance(exc, ConnectionRefusedError):
            return TransientDeliveryError("mail server refused the connection",
                                          channel=CHANNEL)
        if isinstance(exc, socket.timeout | TimeoutError):
            return TransientDeliveryError(
                f"mail server did not answer within {self.timeout:g} s", channel=CHANNEL)
        return TransientDeliveryError(f"mail server unreachable ({kind})", channel=CHANNEL)


def _finish(smtp: smtplib.SMTP, *, polite: bool) -> None:
    """QUIT after a success (errors ignored: the message is accepted); just close after a
    failure, so a dead connection does not cost a second timeout."""
    if polite:
        try:
            smtp.quit()
            return
        except (smtplib.SMTPException, OSError):
            pass
    smtp.close()
