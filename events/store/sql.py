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
  same statement (one snapshot), read only rows whose ``tx`` is below :data:`READ_BOUND`:
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

import threading
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ARRAY,
    Connection,
    Engine,
    String,
    and_,
    func,
    insert,
    literal,
    literal_column,
    select,
    text,
    tuple_,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.sql.elements import ColumnClause

from events.envelope import (
    GENESIS,
    NewEvent,
    RecordedEvent,
    chain_hash,
    content_hash,
    decode_data,
)
from events.errors import (
    ConcurrencyConflict,
    EventError,
)
from events.store.tables import events as T
from events.store.writing import Head, Writer, build_rows, recorded_events, refusal

_CHUNK = 500
_BIG_CHUNK = 5000  # for key look-ups (SQLite allows 32,766 bound values)

#: the exclusive upper bound of ``tx`` a reader may read (PostgreSQL), see the module doc
READ_BOUND: ColumnClause[Any] = literal_column("""(
    SELECT LEAST(
        pg_snapshot_xmax(s)::text::bigint,
        (SELECT min(x::text::bigint) FROM pg_snapshot_xip(s) AS x
          WHERE (x::text::bigint % 4294967296) NOT IN (
            SELECT backend_xid::text::bigint FROM pg_stat_activity
             WHERE backend_xid IS NOT NULL
               AND datname IS DISTINCT FROM current_database())))
    FROM pg_current_snapshot() AS s)""")


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


class EventStore:
    #: appends of up to this many events to one stream go out as one autocommit statement:
    #: atomic, and one round trip instead of BEGIN / INSERT / COMMIT
    SINGLE_STATEMENT_MAX = 500

    def __init__(self, engine: Engine, *, head_cache_size: int = 50_000) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name
        self.is_postgres = self.dialect == "postgresql"
        self.tx_expression: ColumnClause[Any] = literal_column(
            "pg_current_xact_id()::text::bigint" if self.is_postgres else "0")
        self.insert_rows = insert(T).values(tx=self.tx_expression)
        self.insert_returning = self.insert_rows.returning(
            T.c.position, T.c.tx, sort_by_parameter_order=True)
        self._autocommit = engine.execution_options(isolation_level="AUTOCOMMIT")
        self._heads: OrderedDict[str, Head] = OrderedDict()
        self._head_cache_size = head_cache_size
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ writing
    @contextmanager
    def transaction(self) -> Iterator[Writer]:
        """One all-or-nothing transaction for any number of appends."""
        with self.engine.connect() as conn:
            if not self.is_postgres:
                conn = conn.execution_options(sqlite_begin="IMMEDIATE")
            writer = Writer(self, conn)
            try:
                with conn.begin():
                    yield writer
                    writer.flush()
            except BaseException:
                for stream in writer.heads:
                    self.forget(stream)
                raise
        self._remember(writer.heads)

    def append(self, stream: str, expected_version: int,
               new: Sequence[NewEvent]) -> list[RecordedEvent]:
        """Append a batch to one stream, all or nothing; returns the stored events."""
        if not 0 < len(new) <= self.SINGLE_STATEMENT_MAX:
            with self.transaction() as w:
                return w.append(stream, expected_version, new)
        head = self.head(stream)
        if head.version != expected_version:
            raise ConcurrencyConflict(stream, expected_version, head.version)
        rows = build_rows(stream, head, new)
        try:
            with self._autocommit.connect() as conn:
                # one statement is one transaction: the rows commit together or not at all
                keys = conn.execute(self.insert_returning, rows).all()
        except IntegrityError as exc:
            self.forget(stream)
            raise refusal(exc, stream, expected_version, rows) from None
        self._remember({stream: Head(rows[-1]["version"], rows[-1]["hash"])})
        return recorded_events(rows, keys)

    # ------------------------------------------------------------------ heads
    def head(self, stream: str, *, conn: Connection | None = None) -> Head:
        with self._lock:
            cached = self._heads.get(stream)
        if cached is not None:
            return cached
        q = (select(T.c.version, T.c.hash).where(T.c.stream == stream)
             .order_by(T.c.version.desc()).limit(1))
        rows = conn.execute(q).all() if conn is not None else self._read(q)
        row = rows[0] if rows else None
        return Head(row[0], row[1]) if row else Head(0, GENESIS)

    def heads(self, streams: Iterable[str], *, conn: Connection | None = None
              ) -> dict[str, Head]:
        """The heads of many streams (streams with no event are left out)."""
        names = sorted(set(streams))
        out: dict[str, Head] = {}
        for i in range(0, len(names), _CHUNK):
            chunk = names[i:i + _CHUNK]
            last = (select(T.c.stream, func.max(T.c.version).label("v"))
                    .where(self._any_of(T.c.stream, chunk)).group_by(T.c.stream).subquery())
            q = select(T.c.stream, T.c.version, T.c.hash).join(
                last, and_(T.c.stream == last.c.stream, T.c.version == last.c.v))
            rows = conn.execute(q).all() if conn is not None else self._read(q)
            out.update({r[0]: Head(r[1], r[2]) for r in rows})
        return out

    def stream_version(self, stream: str) -> int:
        return self.head(stream).version

    def stream_versions(self, streams: Iterable[str], *,
                        conn: Connection | None = None) -> dict[str, int]:
        names = sorted(set(streams))
        out: dict[str, int] = {}
        for i in range(0, len(names), _CHUNK):
            chunk = names[i:i + _CHUNK]
            q = (select(T.c.stream, func.max(T.c.version))
                 .where(self._any_of(T.c.stream, chunk)).group_by(T.c.stream))
            rows = conn.execute(q) if conn is not None else self._read(q)
            out.update({s: v for s, v in rows})
        return out

    def forget(self, stream: str) -> None:
        with self._lock:
            self._heads.pop(stream, None)

    def _remember(self, heads: dict[str, Head]) -> None:
        with self._lock:
            for stream, head in heads.items():
                self._heads[stream] = head
                self._heads.move_to_end(stream)
            while len(self._heads) > self._head_cache_size:
                self._heads.popitem(last=False)

    # ------------------------------------------------------------------ reading
    def _read(self, query: Any) -> Any:
        """One read statement, in autocommit: a single statement sees one snapshot, and
        there is no BEGIN / ROLLBACK round trip around it."""
        with self._autocommit.connect() as conn:
            return conn.execute(query).all()

    def read_stream(self, stream: str, *, known_at: datetime | None = None) -> list[RecordedEvent]:
        q = select(*_COLUMNS).where(T.c.stream == stream).order_by(T.c.version)
        if known_at is not None:
            q = q.where(T.c.recorded_at <= known_at)
        events = [_row_to_event(r) for r in self._read(q)]
        if known_at is None:
            self._remember({stream: Head(events[-1].version, events[-1].hash)} if events else {})
        return events

    def read_streams(self, streams: Iterable[str]) -> dict[str, list[RecordedEvent]]:
        names = sorted(set(streams))
        out: dict[str, list[RecordedEvent]] = {s: [] for s in names}
        for i in range(0, len(names), _CHUNK):
            q = (select(*_COLUMNS).where(T.c.stream.in_(names[i:i + _CHUNK]))
                 .order_by(T.c.stream, T.c.version))
            for r in self._read(q):
                out[r.stream].append(_row_to_event(r))
        return out

    def read_batch(self, after: Checkpoint = START, limit: int = 1000, *,
                   conn: Connection | None = None) -> list[RecordedEvent]:
        """The next events after ``after`` in the order every reader follows."""
        q = select(*_COLUMNS)
        if self.is_postgres:
            q = q.where(and_(
                tuple_(T.c.tx, T.c.position) > tuple_(literal(after.tx), literal(after.position)),
                T.c.tx < READ_BOUND,
            )).order_by(T.c.tx, T.c.position)
        else:
            q = q.where(T.c.position > after.position).order_by(T.c.position)
        q = q.limit(limit)
        rows = conn.execute(q).all() if conn is not None else self._read(q)
        return [_row_to_event(r) for r in rows]

    def tail(self) -> Checkpoint:
        """The checkpoint of the last event a reader can read now."""
        q = select(T.c.tx, T.c.position)
        if self.is_postgres:
            q = q.where(T.c.tx < READ_BOUND).order_by(T.c.tx.desc(), T.c.position.desc())
        else:
            q = q.order_by(T.c.position.desc())
        rows = self._read(q.limit(1))
        return Checkpoint(int(rows[0][0]), int(rows[0][1])) if rows else START

    def read_all(self, after: Checkpoint = START, *, batch_size: int = 2000,
                 known_at: datetime | None = None) -> Iterator[RecordedEvent]:
        """Every event after ``after``, streamed in batches: memory stays flat."""
        checkpoint = after
        while True:
            batch = self.read_batch(checkpoint, batch_size)
            if not batch:
                return
            for e in batch:
                if known_at is None or e.recorded_at <= known_at:
                    yield e
            checkpoint = Checkpoint(batch[-1].tx, batch[-1].position)

    def get_events(self, event_ids: Iterable[str]) -> dict[str, RecordedEvent]:
        ids = sorted(set(event_ids))
        out: dict[str, RecordedEvent] = {}
        for i in range(0, len(ids), _CHUNK):
            q = select(*_COLUMNS).where(self._any_of(T.c.event_id, ids[i:i + _CHUNK]))
            out.update({r.event_id: _row_to_event(r) for r in self._read(q)})
        return out

    def find_idempotency_keys(self, keys: Iterable[str]) -> dict[str, tuple[str, str, str]]:
        """key -> (content_hash, event_id, stream) for keys already stored."""
        wanted = sorted(set(keys))
        out: dict[str, tuple[str, str, str]] = {}
        for i in range(0, len(wanted), _BIG_CHUNK):
            chunk = wanted[i:i + _BIG_CHUNK]
            q = select(T.c.idempotency_key, T.c.content_hash, T.c.event_id, T.c.stream).where(
                self._any_of(T.c.idempotency_key, chunk))
            out.update({r[0]: (r[1], r[2], r[3]) for r in self._read(q)})
        return out

    def _any_of(self, column: Any, values: list[str]) -> Any:
        """``column IN values``. On PostgreSQL as ``IN (SELECT unnest(array))``: one bound
        parameter whatever the count, and a semi-join the planner can hash. (``= ANY(array)``
        compares every row with every element when the table's statistics are stale, as
        right after a bulk import: seconds per query.)"""
        if self.is_postgres:
            return column.in_(select(func.unnest(literal(values, ARRAY(String)))))
        return column.in_(values)

    def analyze(self) -> None:
        """Refresh the planner's statistics (PostgreSQL) after a bulk load."""
        if self.is_postgres:
            with self._autocommit.connect() as conn:
                conn.execute(text("ANALYZE events"))

    def streams(self) -> list[str]:
        return [r[0] for r in self._read(select(T.c.stream).distinct().order_by(T.c.stream))]

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
