"""The alert side's own vocabulary, as ``StrEnum`` (members are plain strings, so rows and
events keep their values): delivery statuses and modes, alert statuses, and the message
kinds that are not clinical (escalation, digest). The clinical kinds and the severities
are :mod:`tracker.alertkinds` (the due-item schedule produces them)."""

from __future__ import annotations

from enum import StrEnum


class DeliveryStatus(StrEnum):
    """``alert_deliveries.status`` (see alerts/tables.py)."""

    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    DEAD = "dead"
    UNKNOWN = "unknown"
    CANCELLED = "cancelled"


class AlertStatus(StrEnum):
    """``alerts.status``."""

    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    CANCELLED = "cancelled"


class DeliveryMode(StrEnum):
    IMMEDIATE = "immediate"
    DIGEST = "digest"


class MessageKind(StrEnum):
    """Messages that are not one clinical alert."""

    ESCALATION = "escalation"
    DIGEST = "digest"
