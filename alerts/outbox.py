"""The outbox: alerts and deliveries as rows, every change written in the same transaction
as the event that records it (stream ``alert:<alert_id>``), so an audit replay of the log
says who was told what, when, and who acted.

Concurrency
- Raising is insert-if-absent on the UNIQUE ``dedupe_key``: two workers racing raise once.
- Claiming takes due rows with ``FOR UPDATE SKIP LOCKED`` (PostgreSQL) and marks them
  ``sending`` with a lease (``lease_owner``, ``lease_until``) in a short transaction; the
  send happens outside any transaction; the outcome is recorded in another one. A row whose
  lease expired (its worker died) is claimed again: at most the in-flight message repeats.
- Every transaction that appends to an alert's stream first locks that alert's row
  (``SELECT … FOR UPDATE``, alert ids in sorted order), so appends never race.
  On SQLite the database lock serialises writers (transactions begin IMMEDIATE).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

import orjson
from sqlalchemy import Connection, and_, insert, or_, select, update

from alerts.health import dead_workers
from alerts.replies import new_code
from alerts.roster import Route
from alerts.rules import AlertSpec, KnownAlert, event_dedupe_key
from alerts.tables import alerts as A
from alerts.tables import deliveries as D
from alerts.vocabulary import AlertStatus, DeliveryMode, DeliveryStatus
from events.envelope import NewEvent
from events.ids import new_event_id
from events.store import ALERT, EventStore, stream_name
from events.store.writing import Writer
from events.vocabulary import (
    AlertAcknowledged,
    AlertCancelled,
    AlertEscalated,
    AlertFailed,
    AlertRaised,
    AlertSent,
    EventData,
)
from tracker.alertkinds import Severity

PENDING, SENDING, SENT, DEAD, UNKNOWN, CANCELLED = (
    DeliveryStatus.PENDING, DeliveryStatus.SENDING, DeliveryStatus.SENT, DeliveryStatus.DEAD,
    DeliveryStatus.UNKNOWN, DeliveryStatus.CANCELLED)
OPEN, ACKNOWLEDGED = AlertStatus.OPEN, AlertStatus.ACKNOWLEDGED
IMMEDIATE, DIGEST = DeliveryMode.IMMEDIATE, DeliveryMode.DIGEST

log = logging.getLogger("alerts.outbox")


def stream_of(alert_id: str) -> str:
    return stream_name(ALERT, alert_id)


@dataclass(frozen=True, slots=True)
class AlertRow:
    alert_id: str
    dedupe_key: str
    grp: str
    patient: str
    kind: str
    severity: str
    item: str
    due_on: Any
    fires_at: datetime
    cause_event_ids: str
    status: str
    level: int
    raised_at: datetime
    raised_by: str
    first_sent_at: datetime | None
    escalate_at: datetime | None
    closed_at: datetime | None
    closed_by: str | None
    close_reason: str | None
    ack_code: str | None = None

    @property
    def patient_ref(self) -> str:  # what alerts.messages.render needs
        return self.patient

    @property
    def urgent(self) -> bool:
        return self.severity == Severity.URGENT


@dataclass(frozen=True, slots=True)
class DeliveryRow:
    delivery_id: str
    alert_id: str
    recipient: str
    channel: str
    level: int
    mode: str
    status: str
    not_before: datetime
    attempts: int
    lease_owner: str | None
    lease_until: datetime | None
    provider_id: str | None
    last_error: str | None
    created_at: datetime
    updated_at: datetime
    sent_at: datetime | None
    receipt: str | None = None  # the provider's latest status (alerts/receipts.py)
    receipt_code: int | None = None
    receipt_at: datetime | None = None
    checked_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Escalation:
    """One escalation step, as data: the role an alert goes to, its routes and when the
    following step is due (``role`` None: the chain is exhausted)."""

    role: str | None
    routes: tuple[Route, ...] = ()
    next_at: datetime | None = None


def _alert(row: Any) -> AlertRow:
    return AlertRow(**dict(row._mapping))


def _delivery(row: Any) -> DeliveryRow:
    return DeliveryRow(**dict(row._mapping))



def reply_key(message_sid: str) -> str:
    """The idempotency key of the acknowledgement an SMS reply made (its MessageSid)."""
    return f"sms-reply:{message_sid}"


class Outbox:
    """Reads and writes the outbox through an :class:`EventStore`'s engine."""

    def __init__(self, store: EventStore, zone: ZoneInfo) -> None:
        self.store = store
        self.engine = store.engine
        self.zone = zone

    # ----------------------------------------------------------------- plumbing
    @contextmanager
    def transaction(self) -> Iterator[Writer]:
        with self.store.transaction() as writer:
            yield writer

    @contextmanager
    def connection(self) -> Iterator[Connection]:
        """A write transaction without events (claims, releases)."""
        with self.store.recorder.write() as conn:
            yield conn

    def new_event(self, data: EventData, now: datetime, by: str,
                  idempotency_key: str | None = None) -> NewEvent:
        return NewEvent(event_id=new_event_id(), type=type(data).__name__, data=data,
                        occurred_at=now, occurred_on=now.astimezone(self.zone).date(),
                        recorded_at=now, recorded_by=by, idempotency_key=idempotency_key)

    def append(self, writer: Writer, alert_id: str, data: Sequence[EventData],
               now: datetime, by: str, *, idempotency_key: str | None = None,
               bulk: bool = True) -> None:
        """Append to the alert's stream; the caller holds the alert's row lock.
        ``idempotency_key`` (one event only) makes the store refuse a second copy;
        ``bulk=False`` writes at once with one INSERT (cheaper for a lone event than the
        bulk path's COPY)."""
        stream = stream_of(alert_id)
        head = writer.head(stream)
        if idempotency_key is not None and len(data) != 1:
            raise ValueError("an idempotency key names exactly one event")
        writer.append(stream, head.version,
                      [self.new_event(d, now, by, idempotency_key) for d in data],
                      returning=not bulk)

    def lock(self, conn: Connection, alert_ids: Iterable[str]) -> dict[str, AlertRow]:
        ids = sorted(set(alert_ids))
        if not ids:
            return {}
        q = select(A).where(A.c.alert_id.in_(ids)).order_by(A.c.alert_id)
        q = self.store.recorder.lock_rows(q)
        return {r.alert_id: _alert(r) for r in conn.execute(q)}

    # ----------------------------------------------------------------- reading
    def known(self, conn: Connection, *, keys: Iterable[str] = ()) -> dict[str, KnownAlert]:
        """Alerts with the given keys, plus every open alert (candidates for cancelling)."""
        wanted = sorted(set(keys))
        out: dict[str, KnownAlert] = {}
        for i in range(0, len(wanted), 500):
            q = select(A.c.alert_id, A.c.dedupe_key, A.c.status, A.c.patient).where(
                A.c.dedupe_key.in_(wanted[i:i + 500]))
            out.update({r.dedupe_key: KnownAlert(*r) for r in conn.execute(q)})
        q = select(A.c.alert_id, A.c.dedupe_key, A.c.status, A.c.patient).where(
            A.c.status == OPEN)
        out.update({r.dedupe_key: KnownAlert(*r) for r in conn.execute(q)})
        return out

    def alerts(self, conn: Connection, *, open_only: bool = False) -> list[AlertRow]:
        q = select(A).order_by(A.c.raised_at, A.c.alert_id)
        if open_only:
            q = q.where(A.c.status == OPEN)
        return [_alert(r) for r in conn.execute(q)]

    def get_alerts(self, conn: Connection, alert_ids: Iterable[str]) -> dict[str, AlertRow]:
        ids = sorted(set(alert_ids))
        return {r.alert_id: _alert(r) for r in conn.execute(
            select(A).where(A.c.alert_id.in_(ids)))} if ids else {}

    def find(self, conn: Connection, ref: str) -> list[AlertRow]:
        """An alert by id, or by a unique prefix of at least 4 characters."""
        exact = conn.execute(select(A).where(A.c.alert_id == ref)).first()
        if exact is not None or len(ref) < 4:
            return [_alert(exact)] if exact is not None else []
        rows = conn.execute(select(A).where(A.c.alert_id.startswith(ref, autoescape=True))
                            .limit(5))
        return [_alert(r) for r in rows]

    def open_by_code(self, conn: Connection, code: str, *, sent_to: str | None = None
                     ) -> list[AlertRow]:
        """The open alerts whose acknowledgement code is ``code`` (normally one);
        ``sent_to``: only those with a delivery to that staff id (the code a reply quotes
        is the one *its sender* was sent)."""
        q = select(A).where(A.c.status == OPEN, A.c.ack_code == code).order_by(A.c.alert_id)
        if sent_to is not None:
            q = q.where(A.c.alert_id.in_(select(D.c.alert_id).where(D.c.recipient == sent_to)))
        return [_alert(r) for r in conn.execute(q)]

    def deliveries(self, conn: Connection, alert_ids: Iterable[str] | None = None
                   ) -> list[DeliveryRow]:
        q = select(D).order_by(D.c.created_at, D.c.level, D.c.recipient, D.c.channel)
        if alert_ids is not None:
            q = q.where(D.c.alert_id.in_(sorted(set(alert_ids))))
        return [_delivery(r) for r in conn.execute(q)]

    # ----------------------------------------------------------------- raising
    def raise_alert(self, writer: Writer, spec: AlertSpec, routes: Sequence[Route], *,
                    now: datetime, not_before: datetime, by: str) -> str | None:
        """Insert the alert if its key is new, its deliveries and AlertRaised; returns the
        new alert id, or None when another worker raised it first."""
        alert_id = str(uuid.uuid4())
        values = {
            "alert_id": alert_id, "dedupe_key": spec.dedupe_key, "grp": spec.group,
            "patient": spec.patient, "kind": spec.kind, "severity": spec.severity,
            "item": spec.item, "due_on": spec.due_on, "fires_at": spec.fires_at,
            "cause_event_ids": orjson.dumps(list(spec.cause_event_ids)).decode(),
            "status": OPEN, "level": 0, "raised_at": now, "raised_by": by,
            "ack_code": self._free_code(writer.conn),
        }
        stmt = self.store.recorder.insert_if_absent(A, values, ["dedupe_key"]).returning(
            A.c.alert_id)
        if writer.conn.execute(stmt).first() is None:
            return None
        mode = IMMEDIATE if spec.urgent else DIGEST
        self._add_deliveries(writer.conn, alert_id, routes, level=0, mode=mode,
                             not_before=not_before, now=now)
        self.append(writer, alert_id, [AlertRaised(
            alert_id=alert_id, kind=spec.kind, severity=spec.severity,  # type: ignore[arg-type]
            due_at=spec.fires_at, dedupe_key=event_dedupe_key(spec.dedupe_key),
            cause_event_ids=list(spec.cause_event_ids), rule=spec.item)], now, by)
        return alert_id

    def _free_code(self, conn: Connection) -> str:
        """An acknowledgement code no open alert has (one indexed look-up per try)."""
        for _ in range(50):
            code = new_code(())
            if conn.execute(select(A.c.alert_id).where(
                    A.c.status == OPEN, A.c.ack_code == code).limit(1)).first() is None:
                return code
        raise RuntimeError("no free acknowledgement code after 50 attempts")

    def _add_deliveries(self, conn: Connection, alert_id: str, routes: Sequence[Route], *,
                        level: int, mode: str, not_before: datetime, now: datetime) -> int:
        unique = {(r.recipient, r.channel): r for r in routes}
        if not unique:
            return 0
        conn.execute(insert(D), [{
            "delivery_id": str(uuid.uuid4()), "alert_id": alert_id, "recipient": r.recipient,
            "channel": r.channel, "level": level, "mode": mode, "status": PENDING,
            "not_before": not_before, "attempts": 0, "created_at": now, "updated_at": now,
        } for r in unique.values()])
        return len(unique)

    # ----------------------------------------------------------------- closing
    def _stop_deliveries(self, conn: Connection, alert_id: str, now: datetime) -> int:
        """Cancel what has not gone yet (and rows abandoned by a dead worker)."""
        waiting = or_(D.c.status == PENDING,
                      and_(D.c.status == SENDING, D.c.lease_until < now))
        result = conn.execute(update(D).where(D.c.alert_id == alert_id, waiting).values(
            status=CANCELLED, lease_owner=None, lease_until=None, updated_at=now))
        return int(result.rowcount or 0)

    def cancel(self, writer: Writer, alert_id: str, reason: str, *, now: datetime,
               by: str) -> bool:
        alert = self.lock(writer.conn, [alert_id]).get(alert_id)
        if alert is None or alert.status != OPEN:
            return False
        self._stop_deliveries(writer.conn, alert_id, now)
        sent = alert.first_sent_at is not None
        full = f"{reason}; {'closed after it went out' if sent else 'cancelled before it went out'}"
        writer.conn.execute(update(A).where(A.c.alert_id == alert_id).values(
            status=CANCELLED, escalate_at=None, closed_at=now, closed_by=by,
            close_reason=full[:200]))
        self.append(writer, alert_id, [AlertCancelled(alert_id=alert_id, reason=full[:200])],
                    now, by)
        return True

    def acknowledge(self, writer: Writer, alert_id: str, *, by: str, note: str | None,
                    now: datetime, via: Literal["sms", "link"] | None = None,
                    provider_id: str | None = None) -> AlertRow:
        """Acknowledge an open alert: its escalation and retries stop. Returns the row as
        it was (its status tells the caller whether anything changed). ``via`` and
        ``provider_id`` record an acknowledgement by SMS reply (its message SID) or by
        e-mail link."""
        alert = self.lock(writer.conn, [alert_id])[alert_id]
        if alert.status != OPEN:
            return alert
        self._stop_deliveries(writer.conn, alert_id, now)
        writer.conn.execute(update(A).where(A.c.alert_id == alert_id).values(
            status=ACKNOWLEDGED, escalate_at=None, closed_at=now, closed_by=by,
            close_reason=None))
        sid = (provider_id or None) and provider_id[:200]
        # an SMS reply's MessageSid keys its acknowledgement: the store refuses a second
        # event with it, so a replayed reply can never acknowledge a later alert
        self.append(writer, alert_id, [AlertAcknowledged(
            alert_id=alert_id, by=by, note=note, via=via, provider_id=sid)], now, by,
            idempotency_key=reply_key(sid) if via == "sms" and sid else None)
        return alert

    # ----------------------------------------------------------------- claiming
    def claim(self, *, owner: str, now: datetime, mode: str, limit: int,
              lease: timedelta, skip_channels: Collection[str] = (),
              heartbeats_at: datetime | None = None) -> list[DeliveryRow]:
        """Take up to ``limit`` due deliveries of ``mode`` for ``owner`` until now + lease
        (none of ``skip_channels``). A row another worker claimed is due again when its
        lease has expired or — with ``heartbeats_at``, the wall-clock instant heartbeats
        are judged at — when that worker's heartbeat has expired (alerts/health.py)."""
        abandoned = D.c.lease_until < now
        if heartbeats_at is not None:
            abandoned = or_(abandoned, D.c.lease_owner.in_(dead_workers(heartbeats_at)))
        due = or_(and_(D.c.status == PENDING, D.c.not_before <= now),
                  and_(D.c.status == SENDING, abandoned))
        q = (select(D.c.delivery_id, D.c.status).where(due, D.c.mode == mode)
             .order_by(D.c.not_before, D.c.delivery_id).limit(limit))
        if skip_channels:
            q = q.where(D.c.channel.not_in(sorted(skip_channels)))
        q = self.store.recorder.claim_rows(q)
        with self.connection() as conn:
            found = conn.execute(q).all()
            if not found:
                return []
            ids = [r[0] for r in found]
            reclaimed = sum(1 for r in found if r[1] == SENDING)
            if reclaimed:
                log.warning("event=outbox.reclaimed owner=%s deliveries=%d "
                            "reason=\"lease or heartbeat expired\"", owner, reclaimed)
            conn.execute(update(D).where(D.c.delivery_id.in_(ids)).values(
                status=SENDING, lease_owner=owner, lease_until=now + lease,
                attempts=D.c.attempts + 1, updated_at=now))
            rows = conn.execute(select(D).where(D.c.delivery_id.in_(ids))
                                .order_by(D.c.not_before, D.c.delivery_id))
            return [_delivery(r) for r in rows]

    def abandoned(self, owner: str, *, heartbeats_at: datetime, now: datetime) -> bool:
        """True when an immediate delivery is held by a worker other than ``owner`` whose
        heartbeat expired (or whose lease ran out): it is waiting to be taken over."""
        q = select(D.c.delivery_id).where(
            D.c.status == SENDING, D.c.mode == IMMEDIATE, D.c.lease_owner != owner,
            or_(D.c.lease_owner.in_(dead_workers(heartbeats_at)), D.c.lease_until < now)
        ).limit(1)
        with self.engine.connect() as conn:
            return conn.execute(q).first() is not None

    def immediate_waiting(self, now: datetime, *, skip_channels: Collection[str] = ()
                          ) -> bool:
        """True when an immediate delivery is pending and due (none of ``skip_channels``),
        or an open alert's escalation instant has come: work for the next tick, now."""
        q = select(D.c.delivery_id).where(D.c.status == PENDING, D.c.mode == IMMEDIATE,
                                          D.c.not_before <= now).limit(1)
        if skip_channels:
            q = q.where(D.c.channel.not_in(sorted(skip_channels)))
        e = select(A.c.alert_id).where(A.c.status == OPEN, A.c.escalate_at <= now).limit(1)
        with self.engine.connect() as conn:
            return (conn.execute(q).first() is not None
                    or conn.execute(e).first() is not None)

    def release(self, owner: str, *, now: datetime, delivery_ids: Iterable[str] | None = None
                ) -> int:
        """Give back rows ``owner`` claimed but did not send (the attempt is not counted)."""
        cond = [D.c.status == SENDING, D.c.lease_owner == owner]
        if delivery_ids is not None:
            ids = sorted(set(delivery_ids))
            if not ids:
                return 0
            cond.append(D.c.delivery_id.in_(ids))
        with self.connection() as conn:
            result = conn.execute(update(D).where(*cond).values(
                status=PENDING, lease_owner=None, lease_until=None,
                attempts=D.c.attempts - 1, updated_at=now))
            return int(result.rowcount or 0)

    def add_fallback(self, conn: Connection, delivery: DeliveryRow, channel: str, *,
                     now: datetime) -> bool:
        """A delivery of the same alert, person, level and mode by ``channel``, due now;
        False when that person already has one by that channel at that level."""
        exists = conn.execute(select(D.c.delivery_id).where(
            D.c.alert_id == delivery.alert_id, D.c.recipient == delivery.recipient,
            D.c.channel == channel, D.c.level == delivery.level)).first()
        if exists is not None:
            return False
        self._add_deliveries(conn, delivery.alert_id, [Route(delivery.recipient, channel)],
                             level=delivery.level, mode=delivery.mode, not_before=now, now=now)
        return True

    # ----------------------------------------------------------------- outcomes
    def record_sent(self, writer: Writer, delivery: DeliveryRow, *, provider_id: str | None,
                    channel: str, now: datetime, by: str, escalate_at: datetime | None
                    ) -> None:
        """Record a delivery that went out; ``escalate_at`` (the policy's instant for a
        first send) is stored when this is the alert's first send and it is urgent, open
        and not already scheduled."""
        alert = self.lock(writer.conn, [delivery.alert_id])[delivery.alert_id]
        writer.conn.execute(update(D).where(D.c.delivery_id == delivery.delivery_id).values(
            status=SENT, provider_id=provider_id, sent_at=now, lease_owner=None,
            lease_until=None, last_error=None, updated_at=now))
        if alert.first_sent_at is None:
            changes: dict[str, Any] = {"first_sent_at": now}
            if alert.urgent and alert.status == OPEN and alert.escalate_at is None:
                changes["escalate_at"] = escalate_at
            writer.conn.execute(update(A).where(A.c.alert_id == alert.alert_id)
                                .values(**changes))
        self.append(writer, alert.alert_id, [AlertSent(
            alert_id=alert.alert_id, channel=channel, recipient=delivery.recipient,
            provider_id=(provider_id or None) and provider_id[:200],
            attempt=max(1, delivery.attempts))], now, by)

    def record_failure(self, writer: Writer, delivery: DeliveryRow, *, error: str,
                       permanent: bool, unknown: bool, retry_at: datetime | None,
                       now: datetime, by: str, escalate_at: datetime | None) -> str:
        """Record a failed attempt; returns the delivery's new status (pending = retry).
        ``escalate_at`` (the policy's instant for an unknown outcome, or for nobody
        reached) is stored on an urgent open alert not yet scheduled when the outcome is
        unknown, or when it is dead and nobody at the alert's level was or may be told."""
        alert = self.lock(writer.conn, [delivery.alert_id])[delivery.alert_id]
        status = UNKNOWN if unknown else DEAD if (permanent or retry_at is None) else PENDING
        values: dict[str, Any] = {"status": status, "last_error": error[:500],
                                  "lease_owner": None, "lease_until": None, "updated_at": now}
        if status == PENDING:
            assert retry_at is not None
            values["not_before"] = retry_at
        writer.conn.execute(update(D).where(D.c.delivery_id == delivery.delivery_id)
                            .values(**values))
        scheduled = not alert.urgent or alert.status != OPEN or alert.escalate_at is not None
        if not scheduled and (unknown or (status == DEAD and not self._anyone_left(
                writer.conn, alert.alert_id, alert.level))):
            self._set_escalate_at(writer.conn, alert.alert_id, escalate_at)
        elif (status == DEAD and alert.urgent and alert.status == OPEN
              and escalate_at is not None and alert.escalate_at is not None
              and escalate_at < alert.escalate_at
              and not self._anyone_left(writer.conn, alert.alert_id, alert.level)):
            # the level was reached once (an SMS went out) but a receipt later said it never
            # arrived, and this was the last way left: escalate now, not at the old instant
            self._set_escalate_at(writer.conn, alert.alert_id, escalate_at)
        self.append(writer, alert.alert_id, [AlertFailed(
            alert_id=alert.alert_id, channel=delivery.channel, recipient=delivery.recipient,
            error=error[:500], permanent=status == DEAD, outcome_unknown=unknown,
            attempt=max(1, delivery.attempts))], now, by)
        return status

    def _set_escalate_at(self, conn: Connection, alert_id: str, when: datetime | None
                         ) -> None:
        conn.execute(update(A).where(A.c.alert_id == alert_id).values(escalate_at=when))

    def _anyone_left(self, conn: Connection, alert_id: str, level: int) -> bool:
        """True if a delivery of ``level`` was sent or may still be."""
        q = select(D.c.delivery_id).where(
            D.c.alert_id == alert_id, D.c.level == level,
            D.c.status.in_([PENDING, SENDING, SENT, UNKNOWN])).limit(1)
        return conn.execute(q).first() is not None

    # ----------------------------------------------------------------- escalating
    def due_escalations(self, conn: Connection, now: datetime, limit: int) -> list[str]:
        q = (select(A.c.alert_id).where(A.c.status == OPEN, A.c.escalate_at <= now)
             .order_by(A.c.escalate_at, A.c.alert_id).limit(limit))
        return [r[0] for r in conn.execute(q)]

    def escalate(self, writer: Writer, alert_id: str, *, now: datetime, by: str,
                 steps: Sequence[Escalation]) -> Escalation | None:
        """Move an open alert whose escalation instant has come one level up:
        ``steps[level]`` is the step from ``level`` (role, routes, when the next is due);
        past the end of ``steps`` the chain is exhausted and nothing more is scheduled."""
        alert = self.lock(writer.conn, [alert_id]).get(alert_id)
        if alert is None or alert.status != OPEN or alert.escalate_at is None \
                or alert.escalate_at > now:
            return None
        plan = steps[alert.level] if alert.level < len(steps) else Escalation(None)
        if plan.role is None:
            self._set_escalate_at(writer.conn, alert_id, None)
            return plan
        level = alert.level + 1
        self._add_deliveries(writer.conn, alert_id, plan.routes, level=level, mode=IMMEDIATE,
                             not_before=now, now=now)
        writer.conn.execute(update(A).where(A.c.alert_id == alert_id).values(
            level=level, escalate_at=plan.next_at))
        self.append(writer, alert_id, [AlertEscalated(alert_id=alert_id, to_role=plan.role,
                                                      level=level)], now, by)
        return plan
