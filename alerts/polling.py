"""Settling SMS deliveries by asking Twilio, for hospitals that block inbound traffic (no
status callbacks reach them) and for outcomes nobody reported.

Each poll takes at most ``batch`` SMS deliveries, oldest check first, that are

- ``sent`` with a message SID and no final receipt yet, sent at least ``interval`` ago
  (a callback usually comes first) and less than ``max_age`` ago: fetched by SID
  (``client.messages(sid).fetch()``) and recorded through :class:`alerts.receipts.ReceiptBook`
  exactly as a callback would be (one event per outcome, whichever comes first);
- ``unknown`` (the send's answer was lost): fetched by SID when there is one, else looked
  for with ``client.messages.list(to=…, from_=…, date_sent=…)`` — a message to that phone
  created within the attempt's window (from ``lease`` before the outcome was recorded to
  one minute after), whose SID no other delivery carries and, when it can be rendered
  again, whose body is this alert's. Found: the delivery becomes ``sent`` (``AlertSent``
  with the SID) and its status is recorded as a receipt (delivered, undelivered → the
  other channel or escalation). Not found ``grace`` after the attempt: Twilio never had
  it, so it is sent again now (``AlertFailed``, not permanent, explains the resend).

Every taken row gets ``checked_at = now`` first (claimed with ``FOR UPDATE SKIP LOCKED``
on PostgreSQL), so two workers do not poll the same row in one interval. A look-up that
fails (network, 5xx) is logged and tried again at the next interval.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Protocol, runtime_checkable

from sqlalchemy import and_, or_, select, update

from alerts.channels.twilio_sms import LookupFailed, ProviderMessage
from alerts.dispatch import logfmt
from alerts.messages import render, render_escalation
from alerts.outbox import OPEN, PENDING, SENT, UNKNOWN, DeliveryRow, Outbox, _delivery
from alerts.receipts import FINAL, Receipt, ReceiptBook, ReceiptResult, normalise
from alerts.roster import Roster
from alerts.rules import EscalationPolicy, EscalationTrigger
from alerts.tables import deliveries as D
from events.vocabulary import AlertFailed
from tracker.clock import Clock

log = logging.getLogger("alerts.polling")

CHANNEL = "sms"
DEFAULT_INTERVAL = timedelta(seconds=60)
DEFAULT_BATCH = 50
MAX_AGE = timedelta(hours=24)
GRACE = timedelta(minutes=5)


@runtime_checkable
class MessageLookup(Protocol):
    """What the poller needs of the SMS channel (:class:`~alerts.channels.twilio_sms.
    TwilioSmsChannel` has it)."""

    def fetch_message(self, sid: str) -> ProviderMessage | None: ...

    def find_messages(self, to: str, on: date) -> list[ProviderMessage]: ...


@dataclass
class PollReport:
    checked: int = 0
    delivered: int = 0
    undelivered: int = 0
    resolved: int = 0  # unknown → sent
    resent: int = 0  # unknown, not at Twilio → pending again
    failed_lookups: int = 0


class ReceiptPoller:
    def __init__(self, outbox: Outbox, book: ReceiptBook, lookup: MessageLookup,
                 roster: Roster, clock: Clock, *, by: str, policy: EscalationPolicy,
                 interval: timedelta = DEFAULT_INTERVAL, batch: int = DEFAULT_BATCH,
                 lease: timedelta = timedelta(seconds=120), max_age: timedelta = MAX_AGE,
                 grace: timedelta = GRACE) -> None:
        if interval <= timedelta(0) or batch < 1:
            raise ValueError("the poll interval must be positive and the batch at least 1")
        self.outbox = outbox
        self.book = book
        self.lookup = lookup
        self.roster = roster
        self.clock = clock
        self.by = by
        self.policy = policy
        self.interval = interval
        self.batch = batch
        self.lease = lease
        self.max_age = max_age
        self.grace = grace

    # ----------------------------------------------------------------- taking rows
    def take(self, now: datetime) -> list[DeliveryRow]:
        """Up to ``batch`` rows due for a look-up, marked checked now."""
        not_final = or_(D.c.receipt.is_(None), D.c.receipt.not_in(sorted(FINAL)))
        sent = and_(D.c.status == SENT, D.c.provider_id.is_not(None), not_final,
                    D.c.sent_at <= now - self.interval, D.c.sent_at >= now - self.max_age)
        unknown = and_(D.c.status == UNKNOWN, D.c.updated_at >= now - self.max_age)
        due = or_(D.c.checked_at.is_(None), D.c.checked_at <= now - self.interval)
        q = (select(D.c.delivery_id).where(D.c.channel == CHANNEL, or_(sent, unknown), due)
             .order_by(D.c.checked_at.is_not(None), D.c.checked_at, D.c.delivery_id)
             .limit(self.batch))
        q = self.outbox.store.recorder.claim_rows(q)
        with self.outbox.connection() as conn:
            ids = [r[0] for r in conn.execute(q)]
            if not ids:
                return []
            conn.execute(update(D).where(D.c.delivery_id.in_(ids)).values(checked_at=now))
            return [_delivery(r) for r in conn.execute(
                select(D).where(D.c.delivery_id.in_(ids)).order_by(D.c.delivery_id))]

    # ----------------------------------------------------------------- polling
    def poll(self) -> PollReport:
        now = self.clock.now()
        report = PollReport()
        for d in self.take(now):
            report.checked += 1
            try:
                if d.provider_id:
                    found = self.lookup.fetch_message(d.provider_id)
                    if found is None:
                        log.warning(logfmt("receipt.not_found", alert=d.alert_id,
                                           provider_id=d.provider_id))
                        continue
                    if d.status == UNKNOWN:
                        self._resolve(d, found, now, report)
                    else:
                        self._record(found, now, report)
                else:
                    self._settle_unknown(d, now, report)
            except LookupFailed as exc:
                report.failed_lookups += 1
                log.warning(logfmt("receipt.lookup_failed", alert=d.alert_id,
                                   reason=str(exc), retry="next poll"))
        if report.checked:
            log.info(logfmt("receipt.polled", checked=report.checked,
                            delivered=report.delivered, undelivered=report.undelivered,
                            resolved=report.resolved, resent=report.resent,
                            failed=report.failed_lookups))
        return report

    def _record(self, found: ProviderMessage, now: datetime, report: PollReport) -> None:
        if normalise(found.status) is None:
            return
        outcome = self.book.record(Receipt(found.sid, found.status or "", found.error_code),
                                   now=now, by=self.by, source="poll")
        if outcome.result is ReceiptResult.DELIVERED:
            report.delivered += 1
        elif outcome.result is ReceiptResult.UNDELIVERED:
            report.undelivered += 1

    def _settle_unknown(self, d: DeliveryRow, now: datetime, report: PollReport) -> None:
        try:
            phone = self.roster.member(d.recipient).phone
        except KeyError:
            phone = None
        if phone is None:
            return
        attempted = d.updated_at
        match = self._match(d, phone, attempted)
        if match is not None:
            self._resolve(d, match, now, report)
        elif now - attempted >= self.grace and self._resend(d, now):
            report.resent += 1

    def _match(self, d: DeliveryRow, phone: str, attempted: datetime
               ) -> ProviderMessage | None:
        start, end = attempted - self.lease - timedelta(minutes=1), attempted + timedelta(
            minutes=1)
        days = sorted({start.astimezone(UTC).date(), end.astimezone(UTC).date()})
        candidates = [m for day in days for m in self.lookup.find_messages(phone, day)
                      if m.date_created is not None and start <= m.date_created <= end]
        if not candidates:
            return None
        with self.outbox.engine.connect() as conn:
            taken = {r[0] for r in conn.execute(select(D.c.provider_id).where(
                D.c.provider_id.in_(sorted({m.sid for m in candidates}))))}
            alert = self.outbox.get_alerts(conn, [d.alert_id]).get(d.alert_id)
        body: str | None = None
        if alert is not None and d.mode == "immediate":
            try:
                body = (render(alert) if d.level == 0
                        else render_escalation(alert, level=d.level)).sms_text
            except ValueError:
                body = None
        free = [m for m in candidates if m.sid not in taken
                and (body is None or m.body is None or m.body == body)]
        free.sort(key=lambda m: (m.date_created or attempted, m.sid))
        return free[0] if free else None

    def _resolve(self, d: DeliveryRow, found: ProviderMessage, now: datetime,
                 report: PollReport) -> None:
        """An unknown outcome Twilio has: the delivery is sent (with the SID), then its
        status is a receipt."""
        with self.outbox.transaction() as writer:
            self.outbox.lock(writer.conn, [d.alert_id])
            fresh = writer.conn.execute(select(D.c.status).where(
                D.c.delivery_id == d.delivery_id)).scalar()
            if fresh != UNKNOWN:
                return
            self.outbox.record_sent(
                writer, d, provider_id=found.sid, channel=d.channel, now=now, by=self.by,
                escalate_at=self.policy.escalate_at(EscalationTrigger.SENT, now))
        report.resolved += 1
        log.info(logfmt("receipt.unknown_resolved", alert=d.alert_id, recipient=d.recipient,
                        provider_id=found.sid, status=found.status))
        self._record(found, now, report)

    def _resend(self, d: DeliveryRow, now: datetime) -> bool:
        """Twilio never had it: pending again, due now (only while the alert is open)."""
        with self.outbox.transaction() as writer:
            alert = self.outbox.lock(writer.conn, [d.alert_id]).get(d.alert_id)
            fresh = writer.conn.execute(select(D.c.status).where(
                D.c.delivery_id == d.delivery_id)).scalar()
            if alert is None or alert.status != OPEN or fresh != UNKNOWN:
                return False
            error = "not found at Twilio after an unknown outcome: sending again"
            writer.conn.execute(update(D).where(D.c.delivery_id == d.delivery_id).values(
                status=PENDING, not_before=now, last_error=error, updated_at=now))
            self.outbox.append(writer, d.alert_id, [AlertFailed(
                alert_id=d.alert_id, channel=d.channel, recipient=d.recipient, error=error,
                permanent=False, outcome_unknown=False, attempt=max(1, d.attempts))],
                now, self.by)
        log.warning(logfmt("receipt.resend", alert=d.alert_id, recipient=d.recipient,
                           reason="not found at Twilio"))
        return True
