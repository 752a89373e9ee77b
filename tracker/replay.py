"""The worklist of a past date or an earlier instant, by replaying every patient.

The read model holds each patient evaluated *today* from the whole record, so it can only
answer today's list. For any other date D, or any instant K, each patient is folded again
at D as known at K (``tracker.status.evaluate``, the very function behind ``status --at D
--known-at K``) and the worklist is built from those due items: the list is then exactly
the union of the per-patient statuses. With many patients on PostgreSQL the folding runs in
worker processes, one chunk of patients at a time; each process reads its own chunk.

What a replay reads is cut in SQL to what ``facts(at=D, known_at=K)`` can keep, and no
more: events recorded by K (``recorded_at <= K``) that occurred by D, plus every void and
correction recorded by K whatever its date (it may amend an earlier entry). Only the
columns ``facts`` reads are fetched, and stored payloads are decoded once per distinct
payload in a process (the models are frozen, so equal payloads share one instance). A
patient with nothing left after that cut has no fact at D, so no due item: it is counted,
not folded."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from itertools import repeat
from multiprocessing import get_context
from typing import Any

from sqlalchemy import or_, select

from events.envelope import decode_data
from events.store import EventStore, is_patient_stream
from events.store.tables import events as T
from events.vocabulary import EventData
from tracker.due import DueItem, is_current
from tracker.facts import CORRECTION_TYPES
from tracker.protocol import Protocol
from tracker.status import evaluate

#: fewer patients are folded in-process: starting worker processes costs about a second
PARALLEL_MIN = 400
CHUNK = 250
#: distinct payloads kept decoded per process (a bound on memory, not on correctness)
DECODED_MAX = 50_000
_ZERO = timedelta(0)


@dataclass(frozen=True)
class Question:
    """What a replayed worklist answers: the list of ``at`` as known at ``known_at``."""

    at: date
    known_at: datetime | None
    soon_days: int
    lookback_days: int

    def wants(self, item: DueItem) -> bool:
        """Whether the worklist can show this item (the same cut as ``due_before``)."""
        return (item.fires_on <= self.at + timedelta(days=self.soon_days)
                and is_current(item.kind, item.fires_on, self.at, self.lookback_days))


def row(item: DueItem) -> dict[str, Any]:
    """A due item as the worklist reads it (the columns of the read model's due_items)."""
    return {"key": item.key, "grp": item.group, "patient": item.patient, "kind": item.kind,
            "severity": item.severity, "fires_on": item.fires_on,
            "item_due_on": item.item_due_on, "item": item.item}


_DECODED: dict[tuple[str, int, str], EventData] = {}


def _decoded(event_type: str, schema_version: int, payload: str) -> EventData:
    key = (event_type, schema_version, payload)
    found = _DECODED.get(key)
    if found is None:
        if len(_DECODED) >= DECODED_MAX:
            _DECODED.clear()
        found = _DECODED[key] = decode_data(event_type, schema_version, payload)
    return found


class ReplayedEvent:
    """What ``facts()`` reads of a stored event (``tracker.facts.LoggedEvent``), decoded
    lazily through the per-process payload cache."""

    __slots__ = (
        "_data",
        "event_id",
        "occurred_at",
        "occurred_on",
        "payload",
        "position",
        "recorded_at",
        "recorded_by",
        "schema_version",
        "type",
    )

    def __init__(self, position: int, event_id: str, type: str, schema_version: int,
                 occurred_at: datetime, occurred_on: date, recorded_at: datetime,
                 recorded_by: str, payload: str) -> None:
        self.position, self.event_id, self.type = position, event_id, type
        self.schema_version = schema_version
        self.occurred_at, self.occurred_on = occurred_at, occurred_on
        self.recorded_at, self.recorded_by, self.payload = recorded_at, recorded_by, payload
        self._data: EventData | None = None

    @property
    def data(self) -> EventData:
        if self._data is None:
            self._data = _decoded(self.type, self.schema_version, self.payload)
        return self._data


_READ = (T.c.stream, T.c.position, T.c.event_id, T.c.type, T.c.schema_version,
         T.c.occurred_at, T.c.occurred_on, T.c.recorded_at, T.c.recorded_by, T.c.data)


def read_for(store: EventStore, question: Question,
             streams: Sequence[str]) -> dict[str, list[ReplayedEvent]]:
    """The events of these patients that ``facts(at, known_at)`` can use, by patient."""
    if store.dialect == "postgresql":
        return _read_postgresql(store, question, streams)
    q = select(*_READ).where(T.c.stream.in_(streams),
                             or_(T.c.occurred_on <= question.at,
                                 T.c.type.in_(sorted(CORRECTION_TYPES))))
    if question.known_at is not None:
        q = q.where(T.c.recorded_at <= question.known_at)
    out: dict[str, list[ReplayedEvent]] = {}
    with store.engine.connect() as conn:
        for r in conn.execute(q):
            out.setdefault(r[0], []).append(ReplayedEvent(*r[1:]))
    return out


def _utc(value: datetime) -> datetime:
    return value if value.utcoffset() == _ZERO else value.astimezone(UTC)


def _read_postgresql(store: EventStore, question: Question,
                     streams: Sequence[str]) -> dict[str, list[ReplayedEvent]]:
    """The same query on psycopg's binary protocol: timestamps arrive as integers rather
    than text to parse, which is most of the cost of reading a row."""
    sql = (f"SELECT {', '.join(c.name for c in _READ)} FROM {T.fullname} "
           "WHERE stream = ANY(%s) AND (occurred_on <= %s OR type = ANY(%s))")
    params: list[Any] = [list(streams), question.at, sorted(CORRECTION_TYPES)]
    if question.known_at is not None:
        sql += " AND recorded_at <= %s"
        params.append(question.known_at)
    out: dict[str, list[ReplayedEvent]] = {}
    with store.engine.connect() as conn:
        raw: Any = conn.connection.dbapi_connection
        with raw.cursor(binary=True) as cur:
            cur.execute(sql, params)
            for (stream, position, event_id, etype, schema_version, occurred_at, occurred_on,
                 recorded_at, recorded_by, payload) in cur.fetchall():
                out.setdefault(stream, []).append(ReplayedEvent(
                    position, event_id, etype, schema_version, _utc(occurred_at), occurred_on,
                    _utc(recorded_at), recorded_by, payload))
    return out


def replay_streams(store: EventStore, protocol: Protocol, question: Question,
                   streams: Iterable[str]) -> list[dict[str, Any]]:
    """Fold these patients at the question's date and instant; their wanted due items."""
    names = sorted({s for s in streams if is_patient_stream(s)})
    out: list[dict[str, Any]] = []
    if not names:
        return out
    for patient, events in sorted(read_for(store, question, names).items()):
        ev = evaluate(patient, events, at=question.at, known_at=question.known_at,
                      protocol=protocol)
        out.extend(row(i) for i in ev.due if question.wants(i))
    return out


@dataclass
class Replay:
    rows: list[dict[str, Any]]
    patients: int
    processes: int


def replay(store: EventStore, protocol: Protocol, question: Question, *,
           workers: int = 1) -> Replay:
    """Every patient's due items at ``question.at`` as known at ``question.known_at``."""
    streams = store.patient_streams()
    chunks = [streams[i:i + CHUNK] for i in range(0, len(streams), CHUNK)]
    if workers <= 1 or len(streams) < PARALLEL_MIN or not store.recorder.concurrent_writers:
        rows = [r for chunk in chunks for r in replay_streams(store, protocol, question, chunk)]
        return Replay(rows, len(streams), 1)
    url = store.engine.url.render_as_string(hide_password=False)
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
        parts = pool.map(_replay_chunk, repeat(url), repeat(protocol.model_dump_json()),
                         repeat(question), chunks)
        rows = [r for part in parts for r in part]
    return Replay(rows, len(streams), workers)


_PROCESS: dict[str, tuple[EventStore, Protocol]] = {}


def _replay_chunk(url: str, protocol_json: str, question: Question,
                  streams: Sequence[str]) -> list[dict[str, Any]]:
    """One chunk in a worker process (one engine per process, database and protocol)."""
    key = url + protocol_json
    if key not in _PROCESS:
        from events.store.engine import make_engine

        _PROCESS[key] = (EventStore(make_engine(url)), Protocol.model_validate_json(protocol_json))
    store, protocol = _PROCESS[key]
    return replay_streams(store, protocol, question, streams)
