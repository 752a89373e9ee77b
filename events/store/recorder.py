"""What a database can do for the event store and its neighbours, one recorder per dialect.

Callers (the store, the outbox, the read model, the worker) ask the recorder for a
capability instead of asking which database they are on:

- :meth:`Recorder.write` a connection inside a write transaction (SQLite: ``BEGIN
  IMMEDIATE``, so two writers queue on the lock instead of failing an upgrade);
- :meth:`Recorder.lock_rows` / :meth:`Recorder.claim_rows` row locks for a SELECT
  (``FOR UPDATE`` / ``FOR UPDATE SKIP LOCKED``; SQLite's database lock already serialises);
- :meth:`Recorder.exclusive` a named lock one process holds at a time, or ``False``;
- :meth:`Recorder.insert_if_absent` insert-or-nothing on a unique key;
- :meth:`Recorder.bulk_insert` many event rows in the caller's transaction (COPY /
  executemany), skipping per-row statement processing;
- :attr:`Recorder.concurrent_writers` whether several processes may write at once (and
  so fold, claim and lock in parallel);
- :meth:`Recorder.refusal` an integrity error mapped, by the violated constraint's name,
  to :class:`ConcurrencyConflict` / :class:`DuplicateIdempotencyKey`.

The implementations are :mod:`events.store.sqlite` and :mod:`events.store.postgres`;
:func:`recorder_for` picks one for an engine."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, Engine, Select, Table, and_, func, insert, select
from sqlalchemy.sql.dml import Insert
from sqlalchemy.sql.elements import ColumnClause

from events.envelope import GENESIS, RecordedEvent
from events.errors import ConcurrencyConflict, DuplicateIdempotencyKey, StoreError
from events.store.tables import events as T
from events.store.types import Head

#: stream names per look-up statement
CHUNK = 500

#: the events table's unique constraints, by name (tables.py and the migrations agree)
STREAM_VERSION = "uq_events_stream_version"
IDEMPOTENCY_KEY = "uq_events_idempotency_key"
EVENT_ID = "uq_events_event_id"

#: the columns every bulk path writes, in this order (tx comes first, from the recorder)
BULK_COLUMNS = ("event_id", "stream", "version", "type", "schema_version", "occurred_at",
                "occurred_on", "recorded_at", "recorded_by", "idempotency_key",
                "content_hash", "data", "hash")


class Recorder(ABC):
    """One database dialect's way of doing what the store and its callers need."""

    #: the dialect's name, for messages and logs
    dialect: str
    #: several processes may write at once (row locks, parallel folding, many workers)
    concurrent_writers: bool
    #: the SQL expression of the writing transaction's id (see sql.py's module doc)
    tx_expression: ColumnClause[Any]

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.insert_returning = insert(T).values(tx=self.tx_expression).returning(
            T.c.position, T.c.tx, sort_by_parameter_order=True)

    # ------------------------------------------------------------------ transactions
    def writing(self, conn: Connection) -> Connection:
        """``conn`` set up for a write transaction (call before ``begin``)."""
        return conn

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """A connection inside a write transaction: committed on exit, rolled back on error."""
        with self.engine.connect() as conn:
            conn = self.writing(conn)
            with conn.begin():
                yield conn

    # ------------------------------------------------------------------ locks
    def lock_rows(self, query: Select[Any]) -> Select[Any]:
        """``query`` locking the rows it reads until the transaction ends."""
        return query

    def claim_rows(self, query: Select[Any]) -> Select[Any]:
        """``query`` locking the rows it reads and skipping rows others have locked."""
        return query

    @contextmanager
    def exclusive(self, key: int) -> Iterator[bool]:
        """Hold the lock named ``key`` for the block if nobody else does (yields True), or
        yield False at once. Without concurrent writers there is nobody to exclude."""
        yield True

    @abstractmethod
    def insert_if_absent(self, table: Table, values: dict[str, Any],
                         unique: Sequence[str]) -> Insert:
        """INSERT ``values`` unless a row with the same ``unique`` columns exists."""

    # ------------------------------------------------------------------ queries
    def any_of(self, column: Any, values: list[str]) -> Any:
        """``column IN values``."""
        return column.in_(values)

    @abstractmethod
    def readable(self, query: Select[Any], after: tuple[int, int] | None,
                 *, descending: bool = False) -> Select[Any]:
        """``query`` on the events table restricted to what a log reader may read now,
        after the checkpoint ``(tx, position)``, in the order every reader follows."""

    def head(self, conn: Connection, stream: str) -> Head:
        q = (select(T.c.version, T.c.hash).where(T.c.stream == stream)
             .order_by(T.c.version.desc()).limit(1))
        row = conn.execute(q).first()
        return Head(row[0], row[1]) if row else Head(0, GENESIS)

    def heads(self, conn: Connection, streams: Iterable[str]) -> dict[str, Head]:
        """The heads of many streams (streams with no event are left out)."""
        names = sorted(set(streams))
        out: dict[str, Head] = {}
        for i in range(0, len(names), CHUNK):
            chunk = names[i:i + CHUNK]
            last = (select(T.c.stream, func.max(T.c.version).label("v"))
                    .where(self.any_of(T.c.stream, chunk)).group_by(T.c.stream).subquery())
            q = select(T.c.stream, T.c.version, T.c.hash).join(
                last, and_(T.c.stream == last.c.stream, T.c.version == last.c.v))
            out.update({r[0]: Head(r[1], r[2]) for r in conn.execute(q)})
        return out

    def analyze(self, conn: Connection,  # noqa: B027 (optional capability)
                written: int | None = None) -> None:
        """Refresh the planner's statistics after a bulk load of ``written`` events, if
        they are stale enough to matter, or whatever their state when ``written`` is None
        (where there is a planner that needs it); nothing by default."""

    @abstractmethod
    def recorded(self, row: Sequence[Any]) -> RecordedEvent:
        """The event of a row of the events table's columns in ``RecordedEvent``'s order
        as the driver returns it (no SQLAlchemy type processing: the recorder converts
        what its driver leaves as text, and puts every instant in UTC)."""

    # ------------------------------------------------------------------ writing
    @abstractmethod
    def bulk_insert(self, conn: Connection, rows: list[dict[str, Any]]) -> None:
        """Write event rows in the caller's transaction, without RETURNING; a violated
        constraint raises :meth:`refusal`'s error."""

    def append_one(self, row: dict[str, Any], after: Head) -> tuple[int, int] | None:
        """Insert one event row in a statement of its own (its own transaction), only if
        the stream's event ``after.version`` exists with hash ``after.hash`` (``after``
        version 0: the row is the stream's first) and no event holds the row's version:
        the database checks the head the caller assumed. Returns (position, tx), or None
        when the head is not that (the caller reads it in a transaction and decides).
        Other violated constraints raise :meth:`refusal`'s error."""
        with self.engine.connect() as conn:
            if after.version:
                found = conn.execute(select(T.c.hash).where(
                    T.c.stream == row["stream"], T.c.version == after.version)).first()
                if found is None or found[0] != after.hash:
                    return None
            with conn.begin():
                try:
                    keys = conn.execute(self.insert_returning, [row]).all()
                except Exception as exc:
                    if self.violated_constraint(exc) == STREAM_VERSION:
                        return None
                    raise
        return int(keys[0][0]), int(keys[0][1])

    @abstractmethod
    def violated_constraint(self, exc: BaseException) -> str | None:
        """The name of the constraint an integrity error violated, if it says."""

    def refusal(self, exc: BaseException, stream: str, expected_version: int | None,
                rows: Sequence[dict[str, Any]]) -> StoreError:
        """The store's error for an integrity error on the events table."""
        name = self.violated_constraint(exc)
        if name == IDEMPOTENCY_KEY:
            key = next((r["idempotency_key"] for r in rows if r["idempotency_key"]), "?")
            return DuplicateIdempotencyKey(str(key))
        if name == STREAM_VERSION:
            return ConcurrencyConflict(stream, expected_version or 0, None)
        return StoreError(f"the store refused the append ({name or 'integrity error'})")


def recorder_for(engine: Engine) -> Recorder:
    """The recorder of the engine's dialect."""
    if engine.dialect.name == "postgresql":
        from events.store.postgres import PostgresRecorder
        return PostgresRecorder(engine)
    if engine.dialect.name == "sqlite":
        from events.store.sqlite import SQLiteRecorder
        return SQLiteRecorder(engine)
    raise StoreError(f"unsupported database {engine.dialect.name!r}: use SQLite or PostgreSQL")
