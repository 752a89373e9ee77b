"""The append-only event store.

Guarantees
- **Optimistic concurrency**: ``(stream, version)`` is unique; ``append`` checks the
  caller's expected version and a concurrent writer that got there first makes the
  database refuse the insert, which surfaces as :class:`ConcurrencyConflict`.
- **Append only**: triggers (see tables.py, created by the migrations) refuse UPDATE,
  DELETE (and TRUNCATE on PostgreSQL) of events.
- **Hash chain**: each event's ``hash`` is SHA-256 over the previous event's hash in its
  stream and the canonical JSON of everything stored; :meth:`verify` recomputes it.
- **No reader skips an event** (PostgreSQL): positions come from a sequence, so they are
  taken in one order and committed in another. Every row also stores the id of the
  transaction that wrote it (``tx``). Readers follow the pair ``(tx, position)`` and, in the
  same statement (one snapshot), read only rows whose ``tx`` is below ``READ_BOUND`` (postgres.py):
  the smallest transaction id still running at the snapshot, leaving out transactions of
  backends connected to *other databases* (they cannot write this table), or the
  snapshot's ``xmax`` when none is left. Every transaction below that bound has ended and
  any transaction that writes later gets a larger id, so no row can ever appear behind a
  reader's checkpoint: the readable log only grows at its end. Writers take no lock.
  Leaving out other databases' transactions keeps a long transaction elsewhere on the
  server (a backup, an idle session) from stalling readers; a transaction whose database
  cannot be read from ``pg_stat_activity`` (a role without ``pg_read_all_stats``, a
  prepared transaction) is counted conservatively: it delays readers, never skips.
  On SQLite the database lock serialises writers, so positions are already in commit
  order (``tx`` is 0).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, func, literal, select, tuple_
from sqlalchemy.exc import DBAPIError

from events.envelope import (
    GENESIS,
    NewEvent,
    RecordedEvent,
    chain_hash,
    content_hash,
    decode_data,
)
from events.errors import EventError
from events.store.recorder import Recorder, recorder_for
from events.store.streams import PATIENT, kind_of
from events.store.tables import events as T
from events.store.types import Head
from events.store.writing import Writer, build_rows, recorded_events

__all__ = ["START", "ChainBreak", "Checkpoint", "EventStore", "Head"]

_CHUNK = 500
#: a transaction that appends at least this many events refreshes the planner's
#: statistics once it has committed (PostgreSQL; see :meth:`EventStore.transaction`)
ANALYZE_AFTER = 10_000
_BIG_CHUNK = 5000  # for key look-ups (SQLite allows 32,766 bound values)


@dataclass(frozen=True, order=True, slots=True)
class Checkpoint:
    """Where a reader of the whole log stands: ``(tx, position)``, compared as a pair."""

    tx: int
    position: int

    def __str__(self) -> str:
        return f"{self.tx}:{self.position}"

    @classmethod
    def parse(cls, text: str) -> Checkpoint:
        tx, _, pos = text.partition(":")
        return cls(int(tx), int(pos))


START = Checkpoint(0, 0)


@dataclass(frozen=True, slots=True)
class ChainBreak:
    stream: str
    version: int
    event_id: str
    reason: str

    def __str__(self) -> str:
        return f"{self.stream} v{self.version} ({self.event_id}): {self.reason}"


_COLUMNS = (T.c.position, T.c.tx, T.c.event_id, T.c.stream, T.c.version, T.c.type,
            T.c.schema_version, T.c.occurred_at, T.c.occurred_on, T.c.recorded_at,
            T.c.recorded_by, T.c.idempotency_key, T.c.data, T.c.hash)


def _row_to_event(row: Any) -> RecordedEvent:
    return RecordedEvent(*row)


def _plain(value: Any) -> bool:
    """A bound value the driver takes as it is (no SQLAlchemy bind processing needed)."""
    if isinstance(value, list):
        return all(isinstance(v, str) for v in value)
    return value is None or isinstance(value, int | str)


#: the most stream heads a store remembers as hints (then it forgets them all)
HEAD_HINTS = 100_000


class EventStore:
    """The log. Any number of stores, in any number of processes, on one database see the
    same log: nothing a store remembers decides anything.

    A store keeps *hints*: the heads (version, hash) of streams as committed by its own
    transactions. A single-event append whose expected version matches the hint goes out
    as one statement that the database itself checks (the previous event exists with that
    hash, and the unique ``(stream, version)`` refuses a taken version); when the hint is
    missing, stale (another store or process appended) or refused, the append takes the
    ordinary path and reads the head in its transaction. A hint is set only after its
    transaction committed, so it never names an event that does not exist. (The head cache
    removed in eeb698d *decided* conflicts from memory: a second store refused
    ``expected_version=2`` after the first had appended v2.)"""

    def __init__(self, engine: Engine, recorder: Recorder | None = None) -> None:
        self.engine = engine
        #: what this database can do (locks, bulk paths, …): see recorder.py
        self.recorder = recorder or recorder_for(engine)
        self.dialect = self.recorder.dialect
        self._autocommit = engine.execution_options(isolation_level="AUTOCOMMIT")
        self._hints: dict[str, Head] = {}

    # ------------------------------------------------------------------ writing
    @contextmanager
    def transaction(self) -> Iterator[Writer]:
        """One all-or-nothing transaction for any number of appends.

        After a bulk write (:data:`ANALYZE_AFTER` events or more, and a tenth or more of the
        rows the planner counted) the planner's statistics are refreshed: on a table
        PostgreSQL has not analysed yet (autovacuum waits up to a minute) it estimates too
        few rows for the page query of :meth:`read_all` and sorts everything after the
        checkpoint for each page, so a scan of a freshly loaded log grew with the square
        of its length (43 ms a page instead of 1 at 50k)."""
        with self.recorder.write() as conn:
            writer = Writer(self.recorder, conn)
            yield writer
            writer.flush()
        self._remember(writer.heads)  # committed: every head it saw or moved is a fact
        if writer.written >= ANALYZE_AFTER:
            self.analyze(written=writer.written)

    def append(self, stream: str, expected_version: int,
               new: Sequence[NewEvent]) -> list[RecordedEvent]:
        """Append a batch to one stream, all or nothing; returns the stored events."""
        if len(new) == 1:
            done = self._append_one(stream, expected_version, new[0])
            if done is not None:
                return [done]
        with self.transaction() as w:
            return w.append(stream, expected_version, new)

    def _append_one(self, stream: str, expected_version: int,
                    event: NewEvent) -> RecordedEvent | None:
        """One event in one database-checked statement, when the head is known (a first
        event, or the hint agrees with the caller); None: take the ordinary path."""
        head = Head(0, GENESIS) if expected_version == 0 else self._hints.get(stream)
        if head is None or head.version != expected_version:
            return None
        rows = build_rows(stream, head, [event])
        keys = self.recorder.append_one(rows[0], head)
        if keys is None:
            self._hints.pop(stream, None)
            return None
        self._remember({stream: Head(rows[0]["version"], rows[0]["hash"])})
        return recorded_events(rows, [keys])[0]

    def hinted_version(self, stream: str) -> int | None:
        """The version this store last saw committed on ``stream`` (a hint, never a fact:
        an append at it may still be refused), or None when it has none."""
        hint = self._hints.get(stream)
        return hint.version if hint is not None else None

    def _remember(self, heads: dict[str, Head]) -> None:
        if len(self._hints) + len(heads) > HEAD_HINTS:
            self._hints.clear()
        self._hints.update(heads)

    # ------------------------------------------------------------------ heads
    def head(self, stream: str, *, conn: Connection | None = None) -> Head:
        if conn is not None:
            return self.recorder.head(conn, stream)
        with self._autocommit.connect() as c:
            return self.recorder.head(c, stream)

    def heads(self, streams: Iterable[str], *, conn: Connection | None = None
              ) -> dict[str, Head]:
        """The heads of many streams (streams with no event are left out)."""
        if conn is not None:
            return self.recorder.heads(conn, streams)
        with self._autocommit.connect() as c:
            return self.recorder.heads(c, streams)

    def stream_version(self, stream: str) -> int:
        return self.head(stream).version

    def stream_versions(self, streams: Iterable[str], *,
                        conn: Connection | None = None) -> dict[str, int]:
        names = sorted(set(streams))
        out: dict[str, int] = {}
        for i in range(0, len(names), _CHUNK):
            chunk = names[i:i + _CHUNK]
            q = (select(T.c.stream, func.max(T.c.version))
                 .where(self.recorder.any_of(T.c.stream, chunk)).group_by(T.c.stream))
            rows = conn.execute(q) if conn is not None else self._read(q)
            out.update({s: v for s, v in rows})
        return out

    # ------------------------------------------------------------------ reading
    def _read(self, query: Any) -> Any:
        """One read statement, in autocommit: a single statement sees one snapshot, and
        there is no BEGIN / ROLLBACK round trip around it."""
        with self._autocommit.connect() as conn:
            return conn.execute(query).all()

    def _run(self, query: Any, conn: Connection | None) -> Any:
        """``query`` on the caller's connection (inside its transaction), or on its own."""
        return conn.execute(query).all() if conn is not None else self._read(query)

    def _rows(self, query: Any, conn: Connection | None = None
              ) -> tuple[Sequence[Any], Callable[[Any], RecordedEvent]]:
        """The rows a select of ``_COLUMNS`` returns and the function that makes each an
        event, on the caller's connection (inside its transaction) or on its own in
        autocommit.

        The hot read path: the statement is compiled by SQLAlchemy and run through
        ``exec_driver_sql`` (SQLAlchemy's error wrapping and invalidation stay), but the
        values skip SQLAlchemy's per-value result processing; the recorder converts them
        (``Recorder.recorded``). Statements with values that need bind processing
        (datetimes) take the ordinary path."""
        if conn is None:
            with self._autocommit.connect() as c:
                return self._rows(query, c)
        compiled = query.compile(dialect=conn.dialect,
                                 compile_kwargs={"render_postcompile": True})
        params = compiled.params
        autocommit = conn.get_execution_options().get("isolation_level") == "AUTOCOMMIT"
        if not (autocommit or conn.in_transaction()) or not all(
                _plain(v) for v in params.values()):
            return conn.execute(query).all(), _row_to_event
        args: Any = (tuple(params[name] for name in compiled.positiontup)
                     if compiled.positiontup is not None else params)
        result = conn.exec_driver_sql(compiled.string, args)
        try:
            # the driver's own tuples: no Row per row
            rows = result.cursor.fetchall()
        except conn.dialect.loaded_dbapi.Error as exc:
            raise DBAPIError.instance(compiled.string, args, exc,
                                      conn.dialect.loaded_dbapi.Error) from exc
        finally:
            result.close()
        return rows, self.recorder.recorded

    def _events(self, query: Any, conn: Connection | None = None) -> list[RecordedEvent]:
        rows, make = self._rows(query, conn)
        return [make(r) for r in rows]

    def read_stream(self, stream: str, *, known_at: datetime | None = None) -> list[RecordedEvent]:
        q = select(*_COLUMNS).where(T.c.stream == stream).order_by(T.c.version)
        if known_at is not None:
            q = q.where(T.c.recorded_at <= known_at)
        return self._events(q)

    def read_streams(self, streams: Iterable[str]) -> dict[str, list[RecordedEvent]]:
        names = sorted(set(streams))
        out: dict[str, list[RecordedEvent]] = {s: [] for s in names}
        for i in range(0, len(names), _CHUNK):
            q = (select(*_COLUMNS).where(T.c.stream.in_(names[i:i + _CHUNK]))
                 .order_by(T.c.stream, T.c.version))
            for e in self._events(q):
                out[e.stream].append(e)
        return out

    def read_batch(self, after: Checkpoint = START, limit: int = 1000, *,
                   conn: Connection | None = None) -> list[RecordedEvent]:
        """The next events after ``after`` in the order every reader follows."""
        q = self.recorder.readable(select(*_COLUMNS), (after.tx, after.position)).limit(limit)
        return self._events(q, conn)

    def tail(self) -> Checkpoint:
        """The checkpoint of the last event a reader can read now."""
        q = self.recorder.readable(select(T.c.tx, T.c.position), None, descending=True)
        rows = self._read(q.limit(1))
        return Checkpoint(int(rows[0][0]), int(rows[0][1])) if rows else START

    def read_all(self, after: Checkpoint = START, *, batch_size: int = 2000,
                 known_at: datetime | None = None) -> Iterator[RecordedEvent]:
        """Every event after ``after``, streamed in batches: memory stays flat.

        Each event is made from its row as it is yielded, and the reader holds none once
        the caller moves on: a scan's events die young instead of a whole page (with its
        decoded payloads) surviving into the garbage collector's older generations."""
        checkpoint = after
        while True:
            q = self.recorder.readable(select(*_COLUMNS),
                                       (checkpoint.tx, checkpoint.position)).limit(batch_size)
            rows, make = self._rows(q)
            if not rows:
                return
            for r in rows:
                e = make(r)
                if known_at is None or e.recorded_at <= known_at:
                    yield e
            del e
            checkpoint = Checkpoint(int(rows[-1][1]), int(rows[-1][0]))

    def get_events(self, event_ids: Iterable[str], *,
                   conn: Connection | None = None) -> dict[str, RecordedEvent]:
        ids = sorted(set(event_ids))
        out: dict[str, RecordedEvent] = {}
        for i in range(0, len(ids), _CHUNK):
            q = select(*_COLUMNS).where(self.recorder.any_of(T.c.event_id, ids[i:i + _CHUNK]))
            out.update({e.event_id: e for e in self._events(q, conn)})
        return out

    def read_types(self, streams: Iterable[str], types: Sequence[str], *,
                   conn: Connection | None = None) -> list[RecordedEvent]:
        """The events of these types in these streams, in stream and version order."""
        names = sorted(set(streams))
        out: list[RecordedEvent] = []
        for i in range(0, len(names), _CHUNK):
            q = (select(*_COLUMNS)
                 .where(self.recorder.any_of(T.c.stream, names[i:i + _CHUNK]),
                        T.c.type.in_(list(types)))
                 .order_by(T.c.stream, T.c.version))
            out.extend(self._events(q, conn))
        return out

    def find_idempotency_keys(self, keys: Iterable[str], *, conn: Connection | None = None
                              ) -> dict[str, tuple[str, str, str]]:
        """key -> (content_hash, event_id, stream) for keys already stored."""
        wanted = sorted(set(keys))
        out: dict[str, tuple[str, str, str]] = {}
        for i in range(0, len(wanted), _BIG_CHUNK):
            chunk = wanted[i:i + _BIG_CHUNK]
            q = select(T.c.idempotency_key, T.c.content_hash, T.c.event_id, T.c.stream).where(
                self.recorder.any_of(T.c.idempotency_key, chunk))
            out.update({r[0]: (r[1], r[2], r[3]) for r in self._run(q, conn)})
        return out

    def analyze(self, *, written: int | None = None) -> None:
        """Refresh the planner's statistics (PostgreSQL) after a bulk load: always, or,
        given the ``written`` events of a transaction, only when that is a large enough
        share of what the planner counted (``postgres.STALE_SHARE``)."""
        with self._autocommit.connect() as conn:
            self.recorder.analyze(conn, written)

    def streams(self, kind: str | None = None) -> list[str]:
        """Every stream's name, or only those of one kind (see streams.py)."""
        names = [r[0] for r in self._read(select(T.c.stream).distinct().order_by(T.c.stream))]
        return names if kind is None else [s for s in names if kind_of(s) == kind]

    def patient_streams(self) -> list[str]:
        """The streams of patients (not of alerts, accounts, …)."""
        return self.streams(PATIENT)

    def count(self) -> int:
        return int(self._read(select(func.count()).select_from(T))[0][0])

    # ------------------------------------------------------------------ audit
    def verify(self, *, batch_size: int = 2000) -> list[ChainBreak]:
        """Recompute every stream's hash chain; name each event that no longer matches."""
        breaks: list[ChainBreak] = []
        last: tuple[str, int] = ("", 0)
        prev_hash = GENESIS
        while True:
            q = (select(*_COLUMNS, T.c.content_hash)
                 .where(tuple_(T.c.stream, T.c.version)
                        > tuple_(literal(last[0]), literal(last[1])))
                 .order_by(T.c.stream, T.c.version).limit(batch_size))
            rows = self._read(q)
            if not rows:
                return breaks
            for r in rows:
                if r.stream != last[0]:
                    prev_hash, expected_version = GENESIS, 1
                else:
                    expected_version = last[1] + 1
                if r.version != expected_version:
                    breaks.append(ChainBreak(r.stream, r.version, r.event_id,
                                             f"version gap: expected {expected_version}"))
                data_json = r.data.encode()
                recomputed = chain_hash(
                    prev_hash, event_id=r.event_id, stream=r.stream, version=r.version,
                    event_type=r.type, schema_version=r.schema_version,
                    occurred_at=r.occurred_at, occurred_on=r.occurred_on,
                    recorded_at=r.recorded_at, recorded_by=r.recorded_by,
                    idempotency_key=r.idempotency_key, data_json=data_json)
                if recomputed != r.hash:
                    breaks.append(ChainBreak(r.stream, r.version, r.event_id,
                                             "content does not match its hash"))
                elif r.content_hash != content_hash(r.type, r.stream, r.occurred_at, data_json):
                    breaks.append(ChainBreak(r.stream, r.version, r.event_id,
                                             "content hash does not match"))
                else:
                    try:
                        decode_data(r.type, r.schema_version, data_json, trusted=False)
                    except (EventError, ValueError) as exc:
                        breaks.append(ChainBreak(r.stream, r.version, r.event_id,
                                                 f"payload no longer decodes: {exc}"))
                prev_hash = r.hash
                last = (r.stream, r.version)
