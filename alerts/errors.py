"""The alert package's error tree.

::

    AlertError                      base: every error this package raises on purpose
    ├── DeliveryError               a channel could not deliver a message
    │   ├── PermanentDeliveryError  do not retry: the same request will fail again
    │   ├── TransientDeliveryError  retry later: the request certainly did not get through
    │   ├── ChannelUnavailableError the provider refused this worker's credentials (Twilio
    │   │                           20003 / HTTP 401, SMTP 535): the channel is down, the
    │   │                           delivery stays pending until the configuration is fixed
    │   └── UnknownOutcomeError     the request may have reached the provider: do not repeat
    │                               it blindly (reconcile first, or accept a duplicate knowingly)
    ├── RosterError                 the staff roster file is invalid (``line`` + ``reason``)
    └── WorkerConfigurationError    the worker cannot start as configured (exit 5 at the CLI)
        └── WorkerAlreadyRunning    a second worker on one SQLite database

Every error carries ``reason`` — a short sentence safe to log and to store in an event:
it never contains a secret (token, password), a phone number, an e-mail address, a
message body or anything about a patient — and ``code``, the provider's code when one
is known (Twilio error code such as ``21610``, SMTP reply code such as ``550``), else
``None``. ``str(error)`` is the reason (prefixed with the line for :class:`RosterError`).

Classification used by the channels:

- Permanent: Twilio 21211 (invalid 'To' number), 21610 (recipient unsubscribed), 21614
  (not a mobile number), 21408/21612 (region/route not permitted), authentication
  failures and any other HTTP 4xx except 429; SMTP 5xx replies (recipient refused,
  message rejected, authentication failed); a recipient without the address the channel
  needs.
- Transient: HTTP 429 and 5xx; connection refused or a timeout while connecting (nothing
  was sent); SMTP 4xx replies; SMTP connection refused or dropped before DATA.
- Unknown outcome: the request left this process but no answer came back — an HTTP read
  timeout after sending, a connection reset after the body was sent, an SMTP timeout or
  disconnect during DATA.
"""

from __future__ import annotations


class AlertError(Exception):
    """Base class of every error raised on purpose by :mod:`alerts`.

    :param reason: short, secret-free, PHI-free explanation a person can act on.
    :param code: provider code (Twilio error code, SMTP reply code) when known.
    """

    def __init__(self, reason: str, *, code: int | str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code

    def __str__(self) -> str:
        return self.reason

    def __repr__(self) -> str:
        return f"{type(self).__name__}(reason={self.reason!r}, code={self.code!r})"


class DeliveryError(AlertError):
    """A channel failed to deliver one message; ``channel`` names it ("sms", "email", …).

    ``retryable`` tells a worker what to do: True for transient errors, False for
    permanent ones and for an unknown outcome (which needs reconciliation, not a retry).
    """

    retryable: bool = False

    def __init__(
        self, reason: str, *, code: int | str | None = None, channel: str | None = None
    ) -> None:
        super().__init__(reason, code=code)
        self.channel = channel


class PermanentDeliveryError(DeliveryError):
    """The provider refused the message for a reason a retry will not change."""

    retryable = False


class TransientDeliveryError(DeliveryError):
    """The message certainly did not get through; the same request may succeed later."""

    retryable = True


class ChannelUnavailableError(DeliveryError):
    """The provider refused the credentials: no message will go by this channel until
    the configuration is fixed and the worker restarted. Not the recipient's fault: the
    delivery is given back (pending), not dead-lettered."""

    retryable = False


class UnknownOutcomeError(DeliveryError):
    """The request may have reached the provider (no answer was received).

    Repeating it can deliver the message twice; a worker should record the attempt and
    reconcile (or escalate to a person) rather than retry blindly.
    """

    retryable = False


class RosterError(AlertError):
    """An invalid roster file. ``line`` is the 1-based TOML line of the offending entry
    (``None`` when the problem is not tied to a line, e.g. an unreadable file)."""

    def __init__(self, line: int | None, reason: str) -> None:
        super().__init__(reason, code=None)
        self.line = line

    def __str__(self) -> str:
        return f"line {self.line}: {self.reason}" if self.line is not None else self.reason

    def __repr__(self) -> str:
        return f"RosterError(line={self.line!r}, reason={self.reason!r})"


class WorkerConfigurationError(AlertError):
    """The worker cannot run as configured; the CLI reports it as a configuration error
    (exit 5). Kept here so the worker does not import the CLI's error tree."""


class WorkerAlreadyRunning(WorkerConfigurationError):
    """A second worker on one SQLite database."""
