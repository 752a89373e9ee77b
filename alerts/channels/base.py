"""What every channel takes and returns: :class:`Message`, :class:`Recipient`,
:class:`DeliveryReceipt` and the :class:`Channel` protocol.

A channel delivers one rendered :class:`Message` to one :class:`Recipient`. It either
returns a :class:`DeliveryReceipt` or raises one of the :mod:`alerts.errors` delivery
errors (permanent, transient, unknown outcome); it never retries by itself — retry and
idempotency policy belong to the outbox worker.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from typing import Protocol, runtime_checkable

from tracker.alertkinds import SEVERITY_ORDER, Severity

__all__ = ["SEVERITIES", "Severity"]  # re-exported: the one definition is tracker.alertkinds
SEVERITIES: tuple[Severity, ...] = SEVERITY_ORDER

E164_RE = re.compile(r"^\+[1-9]\d{1,14}$")
ADDRESS_RE = re.compile(r"^[^@\s<>\"(),;:]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$")


def is_e164(number: str | None) -> bool:
    """True for an E.164 phone number: ``+``, a non-zero digit, at most 15 digits."""
    return isinstance(number, str) and E164_RE.fullmatch(number) is not None


def is_address(value: str | None) -> bool:
    """True for a bare ``local@domain.tld`` e-mail address (no display name, no
    whitespace, no CR/LF: nothing that could inject a header)."""
    return isinstance(value, str) and ADDRESS_RE.fullmatch(value) is not None


@dataclass(frozen=True, slots=True)
class Message:
    """A rendered, PHI-free alert message (see :mod:`alerts.messages`).

    ``kind`` and ``severity`` are for routing and records, never shown in the texts
    verbatim; ``subject`` and ``email_text`` go by e-mail, ``sms_text`` (< 160 GSM-7
    characters) by SMS and console.
    """

    alert_id: str
    patient_ref: str
    kind: str
    severity: Severity
    subject: str
    sms_text: str
    email_text: str
    due_on: date


@dataclass(frozen=True, slots=True)
class Recipient:
    """Where to deliver: a staff id plus the addresses the channels need."""

    staff_id: str
    phone: str | None = None  # E.164
    email: str | None = None


@dataclass(frozen=True, slots=True)
class DeliveryReceipt:
    """Proof of hand-over to the provider: the provider's id when it gives one
    (Twilio message SID, e-mail Message-ID, ``console-<alert_id>``) and the channel name."""

    provider_id: str | None
    channel: str


@runtime_checkable
class Channel(Protocol):
    """A delivery channel. ``name`` is the channel's name ("sms", "email", "console", "file").

    ``send`` raises :class:`~alerts.errors.PermanentDeliveryError`,
    :class:`~alerts.errors.TransientDeliveryError` or
    :class:`~alerts.errors.UnknownOutcomeError`; nothing else on purpose.
    """

    name: str

    def send(self, message: Message, recipient: Recipient) -> DeliveryReceipt: ...
