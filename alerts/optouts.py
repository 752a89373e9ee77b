"""Staff members' SMS opt-outs (they replied STOP, or START again) and the events of a
staff member's stream ``staff:<id>`` (opt-outs, the owner told, test messages).

The row in ``sms_opt_outs`` is the current state, read by routing and dispatch; the
events are the history. Both are written in one transaction. ``owner_told_at`` is None
until the worker has told the roster owner about the latest change.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, select, update

from alerts.tables import sms_opt_outs as O
from events.envelope import NewEvent
from events.ids import new_event_id
from events.store import EventStore, stream_name
from events.store.writing import Writer
from events.vocabulary import EventData, SmsOptedIn, SmsOptedOut

STAFF = "staff"


def staff_stream(staff_id: str) -> str:
    return stream_name(STAFF, staff_id)


def append_staff(store: EventStore, writer: Writer, staff_id: str, data: Sequence[EventData],
                 *, now: datetime, by: str, zone: ZoneInfo) -> None:
    """Append ``data`` to ``staff:<staff_id>`` in ``writer``'s transaction."""
    stream = staff_stream(staff_id)
    head = writer.head(stream)
    writer.append(stream, head.version, [NewEvent(
        event_id=new_event_id(), type=type(d).__name__, data=d, occurred_at=now,
        occurred_on=now.astimezone(zone).date(), recorded_at=now, recorded_by=by)
        for d in data], returning=False)


@dataclass(frozen=True, slots=True)
class OptOut:
    staff_id: str
    opted_out: bool
    word: str
    provider_id: str | None
    changed_at: datetime
    owner_told_at: datetime | None


def sms_off(conn: Connection) -> frozenset[str]:
    """The staff ids whose SMS are off (their latest reply was an opt-out word)."""
    return frozenset(r[0] for r in conn.execute(select(O.c.staff_id).where(O.c.opted_out)))


def untold(conn: Connection) -> list[OptOut]:
    """Changes the roster owner has not been told about yet, oldest first."""
    q = select(O).where(O.c.owner_told_at.is_(None)).order_by(O.c.changed_at, O.c.staff_id)
    return [OptOut(**dict(r._mapping)) for r in conn.execute(q)]


def record_opt(store: EventStore, writer: Writer, staff_id: str, *, opted_out: bool,
               word: str, provider_id: str | None, now: datetime, by: str,
               zone: ZoneInfo) -> bool:
    """Record a STOP/START-style reply; False (nothing written) when it changes nothing
    (a retried or replayed webhook — a ``provider_id`` already recorded — or START from
    someone who never stopped)."""
    conn = writer.conn
    current = conn.execute(store.recorder.lock_rows(
        select(O.c.opted_out).where(O.c.staff_id == staff_id))).first()
    if current is None and not opted_out:
        return False
    if current is not None and bool(current[0]) == opted_out:
        return False
    # a reply already recorded (its MessageSid), sent again: Twilio's signature has no
    # timestamp, so a captured STOP replayed after START would otherwise count again
    if provider_id is not None and current is not None and any(
            getattr(e.data, "provider_id", None) == provider_id
            for e in store.read_stream(staff_stream(staff_id))):
        return False
    values = {"opted_out": opted_out, "word": word[:16], "provider_id": provider_id,
              "changed_at": now, "owner_told_at": None}
    if current is None:
        inserted = conn.execute(store.recorder.insert_if_absent(
            O, {"staff_id": staff_id, **values}, ["staff_id"]).returning(O.c.staff_id)).first()
        if inserted is None:  # a concurrent reply inserted it first: that one counts
            return False
    else:
        conn.execute(update(O).where(O.c.staff_id == staff_id).values(**values))
    event: EventData = (SmsOptedOut if opted_out else SmsOptedIn)(
        staff_id=staff_id, word=word[:16], provider_id=provider_id)
    append_staff(store, writer, staff_id, [event], now=now, by=by, zone=zone)
    return True


def mark_told(conn: Connection, staff_id: str, changed_at: datetime, now: datetime) -> None:
    """The owner was told of the change made at ``changed_at`` (a later one stays untold)."""
    conn.execute(update(O).where(O.c.staff_id == staff_id, O.c.changed_at == changed_at)
                 .values(owner_told_at=now))
