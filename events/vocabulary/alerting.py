"""What the alert worker did: appended so an audit shows who was told what, and when.

These are written by the system, never imported from outside."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import Field

from events.vocabulary.common import EventData

Severity = Literal["info", "warning", "urgent"]
ShortText = Annotated[str, Field(min_length=1, max_length=200)]


class _AlertEvent(EventData):
    importable = False
    alert_id: ShortText


class AlertRaised(_AlertEvent):
    kind: ShortText
    severity: Severity
    due_at: datetime
    dedupe_key: ShortText
    cause_event_ids: list[str] = Field(default_factory=list)
    rule: ShortText | None = None


class AlertSent(_AlertEvent):
    channel: ShortText
    recipient: ShortText  # a staff id from the roster, never a phone number or address
    provider_id: ShortText | None = None
    attempt: int = 1


class AlertFailed(_AlertEvent):
    channel: ShortText
    recipient: ShortText
    error: Annotated[str, Field(max_length=500)]
    permanent: bool
    outcome_unknown: bool = False
    attempt: int = 1


class AlertDelivered(_AlertEvent):
    """The provider reported the message delivered to the handset (a Twilio status
    callback or a poll of the message); at most once per delivery."""

    channel: ShortText
    recipient: ShortText
    provider_id: ShortText
    source: Literal["callback", "poll"]


class AlertUndelivered(_AlertEvent):
    """The provider reported the message undelivered or failed after accepting it;
    ``error_code`` is the provider's (Twilio 30003 unreachable handset, 30005 unknown
    number, 30006 landline…); at most once per delivery."""

    channel: ShortText
    recipient: ShortText
    provider_id: ShortText
    status: Literal["undelivered", "failed"]
    error_code: int | None = None
    source: Literal["callback", "poll"]


class AlertEscalated(_AlertEvent):
    to_role: ShortText
    level: int


class AlertAcknowledged(_AlertEvent):
    by: ShortText
    note: Annotated[str, Field(max_length=500)] | None = None
    #: how: None (the CLI or the web page), "sms" (a reply "OK <code>"), "link" (e-mail)
    via: Literal["sms", "link"] | None = None
    provider_id: ShortText | None = None  # the reply's message SID


class AlertCancelled(_AlertEvent):
    reason: ShortText
