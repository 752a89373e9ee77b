"""The access log: every patient page view, chart, export and change is a ``RecordAccessed``
event in the user's access stream ``access:<username>``, never in the clinical stream.

One stream per user keeps concurrent requests of different users from contending for one
stream head; two requests of the same user that race are retried. Queries read the
``events`` table directly: one user's activity is one stream; one patient's access history
is the access events whose canonical JSON names that patient (sorted keys, no spaces, so
``"patient":"P0007"`` is an exact substring)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, select

from events.envelope import NewEvent, decode_data
from events.errors import ConcurrencyConflict
from events.ids import new_event_id
from events.store import EventStore
from events.store.tables import events as T
from events.vocabulary import RecordAccessed
from tracker.clock import Clock

STREAM_PREFIX = "access:"
RETRIES = 5


@dataclass(frozen=True, slots=True)
class Access:
    at: datetime
    user: str
    role: str
    action: str
    patient: str | None
    target: str | None


def stream_of(username: str) -> str:
    return STREAM_PREFIX + username


class AccessLog:
    def __init__(self, store: EventStore, clock: Clock) -> None:
        self.store = store
        self.clock = clock

    def record(self, user: str, role: str, action: str, *, patient: str | None = None,
               target: str | None = None) -> None:
        data = RecordAccessed(user=user, role=role, action=action, patient=patient,
                              target=target[:200] if target else None)
        stream = stream_of(user)
        now = self.clock.now()
        event = NewEvent(event_id=new_event_id(), type="RecordAccessed", data=data,
                         occurred_at=now, occurred_on=now.date(), recorded_at=now,
                         recorded_by=user)
        # the store's hint (the head its last commit on this stream left): the access goes
        # out as one statement the database checks; stale, it is refused, re-read, retried
        known = self.store.hinted_version(stream)
        for attempt in range(RETRIES):
            try:
                if known is None:  # first access of this user here: read the head
                    with self.store.transaction() as w:
                        w.append(stream, w.head(stream).version, [event])
                else:
                    self.store.append(stream, known, [event])
                return
            except ConcurrencyConflict:  # another request or process wrote first
                known = None
                if attempt == RETRIES - 1:
                    raise

    def of_user(self, username: str, *, limit: int = 500) -> list[Access]:
        """The user's latest accesses, newest first."""
        q = (select(T.c.recorded_at, T.c.schema_version, T.c.data)
             .where(T.c.stream == stream_of(username), T.c.type == "RecordAccessed")
             .order_by(T.c.version.desc()).limit(limit))
        return self._rows(q)

    def of_patient(self, ref: str, *, limit: int = 500) -> list[Access]:
        """Who accessed the patient ``ref``, newest first."""
        needle = f'"patient":"{ref}"'
        q = (select(T.c.recorded_at, T.c.schema_version, T.c.data)
             .where(T.c.type == "RecordAccessed",
                    T.c.stream.startswith(STREAM_PREFIX, autoescape=True),
                    T.c.data.contains(needle, autoescape=True))
             .order_by(T.c.recorded_at.desc(), T.c.position.desc()).limit(limit))
        return self._rows(q)

    def users(self) -> list[str]:
        """Every user with at least one access recorded."""
        q = (select(T.c.stream).distinct()
             .where(T.c.stream.startswith(STREAM_PREFIX, autoescape=True))
             .order_by(T.c.stream))
        with self.store.engine.connect() as conn:
            return [s[len(STREAM_PREFIX):] for (s,) in conn.execute(q)]

    def _rows(self, q: Select[Any]) -> list[Access]:
        with self.store.engine.connect() as conn:
            rows = conn.execute(q).all()
        out: list[Access] = []
        for at, version, payload in rows:
            d = decode_data("RecordAccessed", version, payload)
            assert isinstance(d, RecordAccessed)
            out.append(Access(at, d.user, d.role, d.action, d.patient, d.target))
        return out


def log_access(request: Any, user: Any, action: str, *, patient: str | None = None,
               target: str | None = None) -> None:
    """Record ``user``'s ``action`` from a route (``user`` is the route's Principal)."""
    from web.deps import context

    context(request).access.record(user.username, user.role, action, patient=patient,
                                   target=target)
