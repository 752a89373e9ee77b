"""SMS through Twilio's Messages API, with the official ``twilio`` client.

The network layer is injectable: by default the channel builds a
:class:`BaseUrlHttpClient` — a :class:`twilio.http.http_client.TwilioHttpClient` that
sends every request meant for ``https://*.twilio.com`` to ``base_url`` instead (a local
Twilio-compatible server in tests, or an egress proxy) — the approach Twilio documents
for custom HTTP clients. Any other :class:`twilio.http.HttpClient` can be passed as
``http_client``.

Error mapping (see :mod:`alerts.errors`):

- ``TwilioRestException`` with HTTP 429 or 5xx, or a Twilio code in
  :data:`TRANSIENT_CODES` → :class:`TransientDeliveryError`; any other 4xx (21211 invalid
  number, 21610 unsubscribed, 21614 not a mobile…) → :class:`PermanentDeliveryError`;
  HTTP 401 or code 20003 (credentials refused) → :class:`ChannelUnavailableError`.
  ``code`` is the Twilio error code.
- ``requests`` errors raised before anything was sent (connect timeout, connection
  refused, DNS failure, TLS handshake) → transient; errors after the request may have been
  sent (read timeout, connection reset or aborted, a response that cannot be read) →
  :class:`UnknownOutcomeError`.

**[reading]** The brief maps "ConnectionError" to transient; ``requests`` also raises
``ConnectionError`` for a connection reset *after* the body was sent
(``ProtocolError('Connection aborted.')``). That case may have reached Twilio, so it is
classified as an unknown outcome; only connection errors that happened while connecting
are transient.

The auth token is kept as a :class:`pydantic.SecretStr`, never logged, never in ``repr``
nor in an error reason; reasons never contain phone numbers or the message body.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import requests
from pydantic import SecretStr
from twilio.base.exceptions import TwilioRestException, TwilioServiceException
from twilio.http import HttpClient
from twilio.http.http_client import TwilioHttpClient
from twilio.http.response import Response
from twilio.rest import Client
from urllib3.exceptions import (
    ConnectTimeoutError,
    MaxRetryError,
    NewConnectionError,
    ProxyError,
)
from urllib3.exceptions import SSLError as Urllib3SSLError

from alerts.channels.base import DeliveryReceipt, Message, Recipient, is_e164
from alerts.errors import (
    ChannelUnavailableError,
    DeliveryError,
    PermanentDeliveryError,
    TransientDeliveryError,
    UnknownOutcomeError,
)
from alerts.vocabulary import MessageKind

log = logging.getLogger(__name__)

CHANNEL = "sms"
MESSAGING_SERVICE_RE = re.compile(r"MG[0-9a-f]{32}")

#: Twilio error codes that mean "try again later" whatever the HTTP status.
TRANSIENT_CODES: frozenset[int] = frozenset({20429, 20500, 20503, 30001})

#: Short, PHI-free explanations of the Twilio codes a clinic is likely to meet.
KNOWN_CODES: dict[int, str] = {
    20003: "Twilio authentication failed (check the account SID and auth token)",
    20404: "Twilio resource not found (check the account SID)",
    20429: "Twilio rate limit reached",
    21211: "the recipient's phone number is not a valid number",
    21408: "Twilio account is not permitted to send to the recipient's region",
    21606: "the sender number cannot send SMS",
    21610: "the recipient has unsubscribed from SMS (replied STOP)",
    21612: "Twilio cannot route a message to the recipient's number",
    21614: "the recipient's number is not a mobile number",
    21659: "the sender number does not belong to the Twilio account",
    # delivery receipts (status callbacks, polling): the message was accepted, then
    30003: "the handset is unreachable (switched off or out of coverage)",
    30004: "the message was blocked by the recipient or the carrier",
    30005: "the destination number is unknown or no longer exists",
    30006: "the destination is a landline or its carrier cannot take SMS",
    30007: "the carrier filtered the message",
    30008: "the carrier reported an unknown error",
}


class BaseUrlHttpClient(TwilioHttpClient):
    """A :class:`TwilioHttpClient` that sends requests for ``*.twilio.com`` to ``base_url``.

    ``base_url`` is ``scheme://host[:port][/prefix]``; the request path and query are kept
    (``https://api.twilio.com/2010-04-01/...`` → ``http://127.0.0.1:8123/2010-04-01/...``).
    URLs for other hosts pass through unchanged.
    """

    def __init__(self, base_url: str, *, timeout: float | None = None, **kwargs: Any) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("base_url must look like http(s)://host[:port]")
        super().__init__(timeout=timeout, **kwargs)
        self.base_url = base_url.rstrip("/")
        self._target = parts

    def rewrite(self, url: str) -> str:
        parts = urlsplit(url)
        host = parts.hostname or ""
        if host != "twilio.com" and not host.endswith(".twilio.com"):
            return url
        prefix = self._target.path.rstrip("/")
        return urlunsplit(
            (self._target.scheme, self._target.netloc, prefix + parts.path, parts.query, ""))

    def request(
        self,
        method: str,
        url: str,
        params: dict[str, object] | None = None,
        data: dict[str, object] | None = None,
        headers: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        timeout: float | None = None,
        allow_redirects: bool = False,
    ) -> Response:
        return super().request(
            method, self.rewrite(url), params=params, data=data, headers=headers, auth=auth,
            timeout=timeout, allow_redirects=allow_redirects)


#: Twilio codes that mean "these credentials are refused": the channel is down.
CREDENTIAL_CODES: frozenset[int] = frozenset({20003})


def classify_twilio_error(status: int, code: int | None) -> type[DeliveryError]:
    """The delivery error class for a Twilio error response (HTTP ``status``, Twilio ``code``)."""
    if status == 401 or (code is not None and code in CREDENTIAL_CODES):
        return ChannelUnavailableError
    if status == 429 or status >= 500 or (code is not None and code in TRANSIENT_CODES):
        return TransientDeliveryError
    return PermanentDeliveryError


def _twilio_reason(status: int, code: int | None) -> str:
    known = KNOWN_CODES.get(code) if code is not None else None
    if known:
        return f"{known} (HTTP {status}, Twilio code {code})"
    if status == 429:
        return "Twilio rate limit reached (HTTP 429)"
    if status >= 500:
        return f"Twilio server error (HTTP {status})"
    suffix = f", Twilio code {code}" if code is not None else ""
    return f"Twilio refused the message (HTTP {status}{suffix})"


def _sent_nothing(exc: requests.RequestException) -> bool:
    """True when ``exc`` happened while connecting, i.e. no byte of the request was sent."""
    if isinstance(exc, requests.ConnectTimeout | requests.exceptions.SSLError
                  | requests.exceptions.ProxyError):
        return True
    if isinstance(exc, requests.ConnectionError):
        inner = exc.args[0] if exc.args else None
        if isinstance(inner, MaxRetryError):
            return isinstance(inner.reason, NewConnectionError | ConnectTimeoutError
                              | Urllib3SSLError | ProxyError)
    return False


class TwilioSmsChannel:
    """Send :attr:`Message.sms_text` as an SMS through Twilio; ``provider_id`` is the SID.

    :param account_sid: the Twilio account SID (``AC…``).
    :param auth_token: the auth token (``SecretStr`` preferred; a plain ``str`` is wrapped).
    :param from_number: the sender, E.164 (``ValueError`` otherwise).
    :param base_url: send API calls to this ``http(s)://host:port`` instead of Twilio.
    :param http_client: a ready :class:`twilio.http.HttpClient` (then ``base_url`` must be None).
    :param timeout: seconds for connecting and for reading the answer.
    :param status_callback: the URL Twilio posts the message's status to
        (``CNO_TRACKER_PUBLIC_URL/twilio/status``); None: no callback (polling only).

    Nothing touches the network until :meth:`send`. :meth:`fetch_message` and
    :meth:`find_messages` read messages back (delivery receipts by polling).
    """

    name = CHANNEL

    def __init__(
        self,
        account_sid: str,
        auth_token: SecretStr | str,
        from_number: str | None,
        *,
        messaging_service_sid: str | None = None,
        base_url: str | None = None,
        http_client: HttpClient | None = None,
        timeout: float = 10,
        urgent_validity_seconds: int | None = 900,
        status_callback: str | None = None,
    ) -> None:
        if not account_sid:
            raise ValueError("a Twilio account SID is required")
        token = auth_token if isinstance(auth_token, SecretStr) else SecretStr(auth_token)
        if not token.get_secret_value():
            raise ValueError("a Twilio auth token is required")
        if (from_number is None) == (messaging_service_sid is None):
            raise ValueError("give either a from number or a Messaging Service SID")
        if from_number is not None and not is_e164(from_number):
            raise ValueError("the Twilio sender number must be E.164 (e.g. +34600000000)")
        if messaging_service_sid is not None and not MESSAGING_SERVICE_RE.fullmatch(
                messaging_service_sid):
            raise ValueError("the Messaging Service SID must be 'MG' and 32 hex digits")
        if urgent_validity_seconds is not None and not 1 <= urgent_validity_seconds <= 36000:
            raise ValueError("the urgent validity period must be 1 to 36000 seconds")
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        if http_client is not None and base_url is not None:
            raise ValueError("pass either base_url or http_client, not both")
        if status_callback is not None and urlsplit(status_callback).scheme not in (
                "http", "https"):
            raise ValueError("the status callback must be an http(s) URL")
        self.account_sid = account_sid
        self.from_number = from_number
        self.messaging_service_sid = messaging_service_sid
        self.urgent_validity_seconds = urgent_validity_seconds
        self.status_callback = status_callback
        self.timeout = float(timeout)
        self._token = token
        if http_client is None:
            http_client = (BaseUrlHttpClient(base_url, timeout=self.timeout) if base_url
                           else TwilioHttpClient(timeout=self.timeout))
        self.http_client = http_client
        self._client: Client | None = None

    def __repr__(self) -> str:
        return f"TwilioSmsChannel(account_sid={self.account_sid!r}, from_number=…)"

    def _twilio(self) -> Client:
        if self._client is None:
            self._client = Client(
                self.account_sid, self._token.get_secret_value(), http_client=self.http_client)
        return self._client

    def send(self, message: Message, recipient: Recipient) -> DeliveryReceipt:
        """Send one SMS; returns the Twilio message SID or raises a delivery error."""
        if not recipient.phone:
            raise PermanentDeliveryError(
                f"staff {recipient.staff_id!r} has no phone number", channel=CHANNEL)
        if not is_e164(recipient.phone):
            raise PermanentDeliveryError(
                f"staff {recipient.staff_id!r} has a phone number that is not E.164",
                channel=CHANNEL)
        sender: dict[str, Any] = (
            {"messaging_service_sid": self.messaging_service_sid}
            if self.messaging_service_sid is not None else {"from_": self.from_number})
        if message.severity == "urgent" and message.kind != MessageKind.DIGEST \
                and self.urgent_validity_seconds is not None:
            # an urgent page delivered hours late is worse than one that fails and escalates
            sender["validity_period"] = self.urgent_validity_seconds
        try:
            extra: dict[str, Any] = (
                {"status_callback": self.status_callback} if self.status_callback else {})
            created = self._twilio().messages.create(
                to=recipient.phone, body=message.sms_text, **sender, **extra)
        except (TwilioRestException, TwilioServiceException) as exc:
            status = int(exc.status)
            code = _twilio_code(exc.code, status)
            raise classify_twilio_error(status, code)(
                _twilio_reason(status, code), code=code, channel=CHANNEL) from None
        except requests.RequestException as exc:
            if _sent_nothing(exc):
                raise TransientDeliveryError(
                    f"could not connect to Twilio ({type(exc).__name__})",
                    channel=CHANNEL) from None
            if isinstance(exc, requests.ReadTimeout):
                reason = f"no answer from Twilio within {self.timeout:g} s after sending"
            else:
                reason = f"connection to Twilio lost after sending ({type(exc).__name__})"
            raise UnknownOutcomeError(reason, channel=CHANNEL) from None
        except (ValueError, KeyError) as exc:  # a 2xx whose body is not Twilio's JSON
            raise UnknownOutcomeError(
                f"unreadable answer from Twilio ({type(exc).__name__})",
                channel=CHANNEL) from None
        sid = getattr(created, "sid", None)
        if not sid:
            raise UnknownOutcomeError("Twilio accepted the request but returned no SID",
                                      channel=CHANNEL)
        log.info("sms sent: alert %s to staff %s, sid %s",
                 message.alert_id, recipient.staff_id, sid)
        return DeliveryReceipt(provider_id=str(sid), channel=CHANNEL)


    # ----------------------------------------------------------------- reading back
    def fetch_message(self, sid: str) -> ProviderMessage | None:
        """The message ``sid`` as Twilio has it now (``GET …/Messages/{sid}.json``); None
        when Twilio does not know it (404). Raises :class:`LookupFailed` otherwise."""
        try:
            found = self._twilio().messages(sid).fetch()
        except (TwilioRestException, TwilioServiceException) as exc:
            if int(exc.status) == 404:
                return None
            raise LookupFailed(f"Twilio refused the look-up (HTTP {int(exc.status)})") from None
        except (requests.RequestException, ValueError, KeyError) as exc:
            raise LookupFailed(f"Twilio look-up failed ({type(exc).__name__})") from None
        return _provider_message(found)

    def find_messages(self, to: str, on: date) -> list[ProviderMessage]:
        """Messages from our sender to ``to`` whose sent date (GMT) is ``on``
        (``GET …/Messages.json?To=…&From=…&DateSent=YYYY-MM-DD``, at most 200)."""
        try:
            # with a Messaging Service the sender is one of its numbers: filter by To only
            sender: dict[str, Any] = (
                {} if self.messaging_service_sid is not None else {"from_": self.from_number})
            found = self._twilio().messages.list(
                to=to, date_sent=on.isoformat(), limit=200, page_size=100, **sender)
        except (TwilioRestException, TwilioServiceException) as exc:
            raise LookupFailed(f"Twilio refused the look-up (HTTP {int(exc.status)})") from None
        except (requests.RequestException, ValueError, KeyError) as exc:
            raise LookupFailed(f"Twilio look-up failed ({type(exc).__name__})") from None
        return [_provider_message(m) for m in found]


class LookupFailed(Exception):
    """Reading a message back from Twilio failed (the poll tries again later)."""


@dataclass(frozen=True, slots=True)
class ProviderMessage:
    """A message as the provider reports it (no body kept: it is ours and PHI-free, but a
    look-up has no need of it beyond matching)."""

    sid: str
    to: str | None
    status: str | None
    error_code: int | None
    date_created: datetime | None
    body: str | None = None


def _provider_message(found: Any) -> ProviderMessage:
    code = getattr(found, "error_code", None)
    try:
        error_code = int(code) if code not in (None, "") else None
    except (TypeError, ValueError):
        error_code = None
    status = getattr(found, "status", None)
    return ProviderMessage(
        sid=str(found.sid), to=getattr(found, "to", None),
        status=str(status) if status is not None else None, error_code=error_code,
        date_created=getattr(found, "date_created", None), body=getattr(found, "body", None))


def _twilio_code(code: object, status: int) -> int | None:
    """The Twilio error code; None when absent (the client puts the HTTP status there
    when the error body is not Twilio's JSON, e.g. a proxy's HTML page)."""
    try:
        value = int(code)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return None
    return None if value == status else value
