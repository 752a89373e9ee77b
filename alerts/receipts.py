"""Delivery receipts: what the provider later says became of an SMS it accepted.

"Sent" only means Twilio accepted the request. Twilio then reports the message's status —
by a signed status callback to ``CNO_TRACKER_PUBLIC_URL/twilio/status`` (web/routes/
twilio.py), or when the worker polls it (alerts/polling.py). Both end here, in
:meth:`ReceiptBook.record`, so they agree: one ``AlertDelivered`` or ``AlertUndelivered``
per delivery, whichever arrives first, however often either repeats.

- Statuses are ranked (queued/accepted < sending < sent < delivered | undelivered |
  failed): a status that ranks no higher than the one recorded changes nothing, so an
  out-of-order ``sent`` after ``delivered`` never regresses the outcome, and a final
  outcome is never replaced by another.
- Each transaction first locks the alert rows of the message (``SELECT … FOR UPDATE``,
  as every outbox write does) and re-reads the deliveries under that lock; the event's
  idempotency key (``receipt:<sid>:<outcome>:<delivery id>``) makes the store itself
  refuse a second copy.
- A final ``undelivered`` / ``failed`` makes the delivery ``dead`` (its error code kept)
  and takes the existing fallback path of a permanent failure at once: the same person on
  their other channel when the roster has one, else — when nobody else at the alert's
  level was or may still be reached — the urgent alert escalates *now*, not after the
  escalation delay (:meth:`alerts.outbox.Outbox.escalate` runs at the worker's next tick).
- A receipt for a message SID no delivery carries is ignored (``unknown_message``).

**[reading]** Twilio's ``read`` (WhatsApp/RCS) counts as delivered and ``canceled`` (a
scheduled message cancelled) as failed. Statuses Twilio may add later are ignored.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import bindparam, select, update

from alerts.channels.twilio_sms import KNOWN_CODES
from alerts.dispatch import logfmt
from alerts.outbox import DEAD, OPEN, AlertRow, DeliveryRow, Outbox, stream_of
from alerts.roster import Roster
from alerts.rules import EscalationPolicy, EscalationTrigger
from alerts.tables import alerts as A
from alerts.tables import deliveries as D
from events.store.writing import Writer
from events.vocabulary import AlertDelivered, AlertUndelivered

log = logging.getLogger("alerts.receipts")

CHANNEL = "sms"
DELIVERED, UNDELIVERED, FAILED = "delivered", "undelivered", "failed"
FINAL: frozenset[str] = frozenset({DELIVERED, UNDELIVERED, FAILED})
#: Twilio's message statuses, ranked: a lower or equal rank never replaces a higher one
RANK: dict[str, int] = {
    "accepted": 0, "scheduled": 0, "queued": 0, "sending": 1, "sent": 2,
    DELIVERED: 3, UNDELIVERED: 3, FAILED: 3,
}
_ALIASES = {"read": DELIVERED, "canceled": FAILED}


def normalise(status: str | None) -> str | None:
    """Twilio's status as one of :data:`RANK`'s keys, or None for a status we ignore."""
    if not status:
        return None
    value = status.strip().lower()
    value = _ALIASES.get(value, value)
    return value if value in RANK else None


def parse_error_code(value: object) -> int | None:
    """Twilio's ``ErrorCode`` (a string in callbacks, an int in the API), or None."""
    if value is None or value == "":
        return None
    try:
        code = int(str(value).strip())
    except ValueError:
        return None
    return code if 0 < code < 1_000_000 else None


def undelivered_reason(status: str, code: int | None) -> str:
    known = KNOWN_CODES.get(code) if code is not None else None
    suffix = f" (Twilio code {code}: {known})" if known else (
        f" (Twilio code {code})" if code is not None else "")
    return f"Twilio reported the SMS {status}{suffix}"


class ReceiptResult(StrEnum):
    UNKNOWN_MESSAGE = "unknown_message"  # no delivery carries this SID: ignored
    IGNORED = "ignored"  # a status we do not track
    STALE = "stale"  # ranks no higher than what is recorded (repeat, out of order)
    PROGRESS = "progress"  # a higher, not final status (queued → sent)
    DELIVERED = "delivered"  # AlertDelivered appended
    UNDELIVERED = "undelivered"  # AlertUndelivered appended (and the fallback taken)


@dataclass(frozen=True, slots=True)
class Receipt:
    """What the provider says of one message."""

    sid: str
    status: str
    error_code: int | None = None


@dataclass
class ReceiptOutcome:
    result: ReceiptResult
    alert_ids: list[str] = field(default_factory=list)
    #: (delivery id, channel) of each fallback delivery added
    fallbacks: list[tuple[str, str]] = field(default_factory=list)
    #: alerts whose escalation was brought forward to now
    escalate_now: list[str] = field(default_factory=list)


class ReceiptBook:
    """Records receipts in the outbox and the alerts' streams.

    :param available: the channels a fallback may use (the worker's; None: any channel the
        roster gives the person — the web process has no channels of its own, and a
        fallback the worker cannot send fails at once and escalates).
    """

    def __init__(self, outbox: Outbox, roster: Roster, *, policy: EscalationPolicy,
                 available: Collection[str] | None = None) -> None:
        self.outbox = outbox
        self.roster = roster
        self.policy = policy
        self.available = None if available is None else frozenset(available)

    def record(self, receipt: Receipt, *, now: datetime, by: str, source: str
               ) -> ReceiptOutcome:
        """Apply ``receipt`` (``source``: "callback" or "poll") in one transaction."""
        return self.record_many([receipt], now=now, by=by, source=source)[0]

    def record_many(self, receipts: Sequence[Receipt], *, now: datetime, by: str,
                    source: str) -> list[ReceiptOutcome]:
        """Apply ``receipts`` in this order in ONE transaction (a group commit: the web
        process batches concurrent callbacks); an outcome per receipt."""
        statuses = [normalise(r.status) for r in receipts]
        outcomes = [ReceiptOutcome(ReceiptResult.IGNORED) for _ in receipts]
        sids = sorted({r.sid for r, st in zip(receipts, statuses, strict=True) if st})
        if not sids:
            return outcomes
        with self.outbox.transaction() as writer:
            conn = writer.conn
            # one round trip: the messages' deliveries with their alerts, both locked (the
            # alert rows in id order, as every outbox write locks them)
            q = self.outbox.store.recorder.lock_rows(
                select(A, *[c.label(f"d_{c.name}") for c in D.c])
                .join(D, D.c.alert_id == A.c.alert_id)
                .where(D.c.provider_id.in_(sids), D.c.channel == CHANNEL)
                .order_by(A.c.alert_id, D.c.delivery_id))
            found = conn.execute(q).all()
            alerts = {r.alert_id: AlertRow(**{c.name: r._mapping[c.name] for c in A.c})
                      for r in found}
            by_sid: dict[str, list[DeliveryRow]] = {}
            for r in found:
                d = DeliveryRow(**{c.name: r._mapping[f"d_{c.name}"] for c in D.c})
                by_sid.setdefault(str(d.provider_id), []).append(d)
            if len(alerts) > 1:
                writer.prefetch_heads(stream_of(a) for a in alerts)
            deferred: list[dict[str, Any]] | None = [] if len(receipts) > 1 else None
            for i, (receipt, status) in enumerate(zip(receipts, statuses, strict=True)):
                if status is None:
                    continue
                rows = by_sid.get(receipt.sid)
                if not rows:
                    outcomes[i] = ReceiptOutcome(ReceiptResult.UNKNOWN_MESSAGE)
                    continue
                outcome = outcomes[i] = ReceiptOutcome(
                    ReceiptResult.STALE, sorted({d.alert_id for d in rows}))
                for n, d in enumerate(rows):
                    result = self._apply(writer, alerts[d.alert_id], d, status,
                                         receipt.error_code, now=now, by=by, source=source,
                                         outcome=outcome, deferred=deferred)
                    if result in (ReceiptResult.PROGRESS, ReceiptResult.DELIVERED,
                                  ReceiptResult.UNDELIVERED):
                        # later receipts of this batch see what this one recorded
                        rows[n] = replace(d, receipt=status, status=(
                            DEAD if result is ReceiptResult.UNDELIVERED else d.status))
                    if _weight(result) > _weight(outcome.result):
                        outcome.result = result
            if deferred:  # one executemany for the batch's progress and delivered rows
                conn.execute(update(D).where(D.c.delivery_id == bindparam("b_id")).values(
                    receipt=bindparam("b_receipt"), receipt_code=bindparam("b_code"),
                    receipt_at=bindparam("b_at")), deferred)
        return outcomes

    def _apply(self, writer: Writer, alert: AlertRow, d: DeliveryRow, status: str,
               code: int | None, *, now: datetime, by: str, source: str,
               outcome: ReceiptOutcome, deferred: list[dict[str, Any]] | None = None
               ) -> ReceiptResult:
        """One delivery's receipt. With ``deferred`` (a batch), the row updates of
        progress and delivered receipts are collected there and the events buffered for
        the bulk path; an undelivered one is written at once (its fallback reads it)."""
        bulk = deferred is not None
        current = d.receipt if d.receipt in RANK else None
        if current in FINAL or (current is not None and RANK[status] <= RANK[current]):
            return ReceiptResult.STALE
        conn = writer.conn
        if status not in FINAL:
            if deferred is not None:
                deferred.append({"b_id": d.delivery_id, "b_receipt": status, "b_code": None,
                                 "b_at": now})
            else:
                conn.execute(update(D).where(D.c.delivery_id == d.delivery_id).values(
                    receipt=status, receipt_at=now))
            return ReceiptResult.PROGRESS
        assert d.provider_id is not None
        key = f"receipt:{d.provider_id}:{status}:{d.delivery_id}"[:200]
        if status == DELIVERED:
            if deferred is not None:
                deferred.append({"b_id": d.delivery_id, "b_receipt": status, "b_code": None,
                                 "b_at": now})
            else:
                conn.execute(update(D).where(D.c.delivery_id == d.delivery_id).values(
                    receipt=status, receipt_code=None, receipt_at=now))
            self.outbox.append(writer, alert.alert_id, [AlertDelivered(
                alert_id=alert.alert_id, channel=d.channel, recipient=d.recipient,
                provider_id=d.provider_id[:200], source=source)],  # type: ignore[arg-type]
                now, by, idempotency_key=key, bulk=bulk)
            log.info(logfmt("alert.delivered", alert=alert.alert_id, recipient=d.recipient,
                            channel=d.channel, provider_id=d.provider_id, source=source))
            return ReceiptResult.DELIVERED
        reason = undelivered_reason(status, code)
        conn.execute(update(D).where(D.c.delivery_id == d.delivery_id).values(
            receipt=status, receipt_code=code, receipt_at=now, status=DEAD,
            last_error=reason[:500], updated_at=now))
        self.outbox.append(writer, alert.alert_id, [AlertUndelivered(
            alert_id=alert.alert_id, channel=d.channel, recipient=d.recipient,
            provider_id=d.provider_id[:200], status=status,  # type: ignore[arg-type]
            error_code=code, source=source)], now, by, idempotency_key=key,  # type: ignore[arg-type]
            bulk=bulk)
        log.warning(logfmt("alert.undelivered", alert=alert.alert_id, recipient=d.recipient,
                           channel=d.channel, provider_id=d.provider_id, status=status,
                           code=code, source=source))
        if alert.status == OPEN:
            self._fall_back(writer, alert, d, now=now, outcome=outcome)
        return ReceiptResult.UNDELIVERED

    def _other_channel(self, d: DeliveryRow) -> str | None:
        try:
            member = self.roster.member(d.recipient)
        except KeyError:
            return None
        return next((c for c in member.channels() if c != d.channel
                     and (self.available is None or c in self.available)), None)

    def _fall_back(self, writer: Writer, alert: AlertRow, d: DeliveryRow, *, now: datetime,
                   outcome: ReceiptOutcome) -> None:
        """The person's other channel now; else, when nobody else at the alert's level
        was or may be reached, an urgent alert escalates now."""
        other = self._other_channel(d)
        if other is not None and self.outbox.add_fallback(writer.conn, d, other, now=now):
            outcome.fallbacks.append((d.delivery_id, other))
            log.warning(logfmt("alert.other_channel", alert=alert.alert_id,
                               recipient=d.recipient, failed=d.channel, channel=other,
                               reason="undelivered"))
            return
        if not alert.urgent or self.outbox._anyone_left(writer.conn, alert.alert_id,
                                                        alert.level):
            return
        when = self.policy.escalate_at(EscalationTrigger.NOBODY_REACHED, now)
        if when is not None and (alert.escalate_at is None or when < alert.escalate_at):
            self.outbox._set_escalate_at(writer.conn, alert.alert_id, when)
            outcome.escalate_now.append(alert.alert_id)
            log.warning(logfmt("alert.escalate_now", alert=alert.alert_id,
                               reason="nobody at this level reached"))


def _weight(result: ReceiptResult) -> int:
    return {ReceiptResult.STALE: 0, ReceiptResult.PROGRESS: 1, ReceiptResult.DELIVERED: 2,
            ReceiptResult.UNDELIVERED: 3}.get(result, 0)
