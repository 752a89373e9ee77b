"""The alert outbox: one ``alerts`` row per raised alert and one ``alert_deliveries`` row
per (alert, recipient, channel, escalation level), on the application's one ``metadata``.

Rows are written in the same transaction as the events that explain them (AlertRaised,
AlertSent, …), so the outbox and the audit log never disagree.

``alerts.status``: ``open`` → ``acknowledged`` | ``cancelled``.
``alert_deliveries.status``: ``pending`` (waiting for ``not_before``) → ``sending``
(claimed by ``lease_owner`` until ``lease_until``) → ``sent`` | ``pending`` (retry) |
``dead`` (permanent failure or too many attempts) | ``unknown`` (the provider may have it:
never repeated blindly); ``cancelled`` when the alert is acknowledged or cancelled first.
"""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
    Date,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from alerts.vocabulary import AlertStatus, DeliveryStatus
from events.store.tables import metadata
from events.store.types import UTCDateTime

ALERT_STATUSES = tuple(AlertStatus)
DELIVERY_STATUSES = tuple(DeliveryStatus)

alerts = Table(
    "alerts", metadata,
    Column("alert_id", String(36), primary_key=True),
    # the due item's stable key: UNIQUE, so racing workers raise an alert once
    Column("dedupe_key", String(300), nullable=False, unique=True),
    Column("grp", String(300), nullable=False),
    Column("patient", String(64), nullable=False, index=True),
    Column("kind", String(64), nullable=False),
    Column("severity", String(16), nullable=False),
    Column("item", String(64), nullable=False),
    Column("due_on", Date, nullable=False),
    Column("fires_at", UTCDateTime(), nullable=False),
    Column("cause_event_ids", Text, nullable=False),
    Column("status", String(16), nullable=False),
    Column("level", Integer, nullable=False),  # escalation level reached (0 = routing)
    Column("raised_at", UTCDateTime(), nullable=False),
    Column("raised_by", String(128), nullable=False),
    Column("first_sent_at", UTCDateTime(), nullable=True),
    Column("escalate_at", UTCDateTime(), nullable=True),  # next escalation, when urgent
    Column("closed_at", UTCDateTime(), nullable=True),
    Column("closed_by", String(128), nullable=True),
    Column("close_reason", String(200), nullable=True),
    # the short code an SMS reply "OK <code>" acknowledges with (unique among open alerts)
    Column("ack_code", String(8), nullable=True),
)
Index("ix_alerts_status_escalate_at", alerts.c.status, alerts.c.escalate_at)
Index("ix_alerts_ack_code", alerts.c.ack_code)

deliveries = Table(
    "alert_deliveries", metadata,
    Column("delivery_id", String(36), primary_key=True),
    Column("alert_id", String(36), ForeignKey("alerts.alert_id"), nullable=False),
    Column("recipient", String(64), nullable=False),  # a staff id from the roster
    Column("channel", String(16), nullable=False),
    Column("level", Integer, nullable=False),
    Column("mode", String(16), nullable=False),  # "immediate" | "digest"
    Column("status", String(16), nullable=False),
    Column("not_before", UTCDateTime(), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("lease_owner", String(64), nullable=True),
    Column("lease_until", UTCDateTime(), nullable=True),
    Column("provider_id", String(200), nullable=True),
    Column("last_error", String(500), nullable=True),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    Column("sent_at", UTCDateTime(), nullable=True),
    # delivery receipts (alerts/receipts.py): the provider's latest status for the message
    # (Twilio: queued, sent, delivered, undelivered, failed…), its error code, when it was
    # learnt, and when the worker last asked the provider (polling)
    Column("receipt", String(16), nullable=True),
    Column("receipt_code", Integer, nullable=True),
    Column("receipt_at", UTCDateTime(), nullable=True),
    Column("checked_at", UTCDateTime(), nullable=True),
    UniqueConstraint("alert_id", "recipient", "channel", "level"),
)
Index("ix_alert_deliveries_claim", deliveries.c.status, deliveries.c.mode,
      deliveries.c.not_before)
Index("ix_alert_deliveries_lease", deliveries.c.status, deliveries.c.lease_until)
Index("ix_alert_deliveries_owner", deliveries.c.lease_owner)
Index("ix_alert_deliveries_provider_id", deliveries.c.provider_id)

#: one row per worker process: its last heartbeat and cycle, and the channels it found down
#: (``{"sms": "reason"}``). A row whose ``expires_at`` has passed (or ``stopped_at`` set)
#: belongs to a dead or stopped worker: its claims may be taken at once (alerts/health.py).
worker_heartbeats = Table(
    "worker_heartbeats", metadata,
    Column("worker_id", String(64), primary_key=True),
    Column("host", String(255), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("version", String(32), nullable=False),
    Column("started_at", UTCDateTime(), nullable=False),
    Column("beat_at", UTCDateTime(), nullable=False),
    Column("expires_at", UTCDateTime(), nullable=False),
    Column("cycle_started_at", UTCDateTime(), nullable=True),
    Column("cycle_ended_at", UTCDateTime(), nullable=True),
    Column("channels_down", Text, nullable=False),
    Column("stopped_at", UTCDateTime(), nullable=True),
)

#: one row per staff member who ever replied an opt-out word (STOP…) or an opt-in word
#: (START…) to the SMS number; ``opted_out`` is the latest. The events say why and when
#: (stream ``staff:<id>``); ``owner_told_at`` is set once the roster owner was told.
sms_opt_outs = Table(
    "sms_opt_outs", metadata,
    Column("staff_id", String(64), primary_key=True),
    Column("opted_out", Boolean, nullable=False),
    Column("word", String(16), nullable=False),
    Column("provider_id", String(64), nullable=True),
    Column("changed_at", UTCDateTime(), nullable=False),
    Column("owner_told_at", UTCDateTime(), nullable=True),
)

#: the one-time e-mail links that were opened (their ``jti``): a second opening is refused
alert_link_uses = Table(
    "alert_link_uses", metadata,
    Column("jti", String(32), primary_key=True),
    Column("alert_id", String(36), nullable=False),
    Column("used_at", UTCDateTime(), nullable=False),
    Column("used_by", String(128), nullable=False),
)
