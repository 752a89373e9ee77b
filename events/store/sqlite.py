"""The SQLite recorder: one writer at a time (the database lock), ``BEGIN IMMEDIATE``."""

from __future__ import annotations

import os
import re
import sqlite3
import threading
import weakref
from collections.abc import Sequence
from datetime import UTC, date, datetime
from functools import lru_cache
from typing import Any

import orjson
from sqlalchemy import (
    Connection,
    Engine,
    Index,
    Select,
    Table,
    UniqueConstraint,
    event,
    func,
    literal,
    literal_column,
    select,
)
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.pool import PoolProxiedConnection, QueuePool
from sqlalchemy.sql.dml import Insert
from sqlalchemy.sql.elements import ColumnClause

from events.envelope import RecordedEvent, recorded_event
from events.store.recorder import BULK_COLUMNS, STREAM_VERSION, Recorder
from events.store.tables import events as T
from events.store.tables import metadata

_INSERT = (f"INSERT INTO events (tx, {', '.join(BULK_COLUMNS)}) "
           f"VALUES (0, {', '.join('?' * len(BULK_COLUMNS))})")
#: one event, its own transaction, after a head the database checks: the row's version is
#: the previous event's plus one, read in the statement itself from the event at the
#: assumed version with the assumed hash. Absent (not that event, not that hash): the
#: version is NULL and the NOT NULL constraint refuses the row; present but no longer the
#: head: unique (stream, version) refuses it. A plain INSERT ... VALUES: the former
#: ``INSERT ... SELECT ... WHERE EXISTS`` read the table it wrote to, so SQLite copied the
#: row through a temporary b-tree first, and RETURNING through another; the position is
#: the rowid (``lastrowid``), tx is always 0 on SQLite. A first event is plain ``_INSERT``
#: (unique (stream, version) refuses it when the stream has one).
_APPEND_AFTER = (f"INSERT INTO events (tx, {', '.join(BULK_COLUMNS)}) VALUES (0, ?, ?, "
                 "(SELECT version + 1 FROM events WHERE stream = ? AND version = ? AND "
                 f"hash = ?), {', '.join('?' * (len(BULK_COLUMNS) - 3))})")
assert BULK_COLUMNS[:3] == ("event_id", "stream", "version")
#: the refusal of an _APPEND_AFTER whose previous event is not the assumed one
_NO_PREVIOUS = "NOT NULL constraint failed: events.version"
#: "UNIQUE constraint failed: events.stream, events.version": SQLite names the columns
_UNIQUE_COLUMNS = re.compile(r"UNIQUE constraint failed: ((?:\w+\.\w+(?:, )?)+)")


@lru_cache(maxsize=8192)
def _instant(moment: datetime) -> str:
    """SQLAlchemy's SQLite DATETIME storage format, in UTC."""
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat(sep=" ",
                                                                timespec="microseconds")


@lru_cache(maxsize=65536)
def _stored_instant(text: str) -> datetime:
    """An instant as :func:`_instant` (and SQLAlchemy's DATETIME) stored it, in UTC (cached:
    an import stamps all its events with one ``recorded_at``, bare dates repeat)."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@lru_cache(maxsize=65536)
def _stored_day(text: str) -> date:
    return date.fromisoformat(text)


def _values(r: dict[str, Any]) -> tuple[Any, ...]:
    """A row's values in BULK_COLUMNS order, in SQLite's storage format (what
    UTCDateTime and Date write)."""
    return (r["event_id"], r["stream"], r["version"], r["type"], r["schema_version"],
            _instant(r["occurred_at"]), r["occurred_on"].isoformat(),
            _instant(r["recorded_at"]), r["recorded_by"], r["idempotency_key"],
            r["content_hash"], r["data"], r["hash"])


def _after_values(r: dict[str, Any], after: Any) -> tuple[Any, ...]:
    """:data:`_APPEND_AFTER`'s parameters: :func:`_values` with the version replaced by
    the previous event's stream, version and hash."""
    stream = r["stream"]
    return (r["event_id"], stream, stream, after.version, after.hash, r["type"],
            r["schema_version"], _instant(r["occurred_at"]), r["occurred_on"].isoformat(),
            _instant(r["recorded_at"]), r["recorded_by"], r["idempotency_key"],
            r["content_hash"], r["data"], r["hash"])


class AppendConnection:
    """The connection an engine's single appends go out on, held instead of checked out
    of the pool per event (the check-out, the pool's reset and the driver's mode switch
    cost about as much as the insert's own work).

    It is the engine's own kind of connection (taken from its pool once and detached, so
    ``make_engine``'s settings apply: WAL, ``synchronous=NORMAL``, the busy timeout), in
    the driver's autocommit mode, used by one thread at a time (``lock``; SQLite lets one
    writer in at a time anyway). It is closed when the engine is disposed, after any
    driver error other than a refused row, and never used in a forked child (SQLite
    connections must not cross a fork: the child opens its own)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self._fairy: PoolProxiedConnection | None = None
        self._conn: sqlite3.Connection | None = None
        self._pid = 0

    def connection(self, engine: Engine) -> sqlite3.Connection:
        """The connection (opened on first use); call with ``lock`` held."""
        if self._conn is None or self._pid != os.getpid():
            if self._conn is not None:  # inherited through a fork: leave it untouched
                _INHERITED.append(self._fairy)
            fairy = engine.raw_connection()
            fairy.detach()
            conn: sqlite3.Connection = fairy.dbapi_connection  # type: ignore[assignment]
            conn.isolation_level = None
            self._fairy, self._conn, self._pid = fairy, conn, os.getpid()
        return self._conn

    def close_locked(self) -> None:
        """Close the connection; call with ``lock`` held."""
        fairy, self._fairy, self._conn = self._fairy, None, None
        if fairy is not None and self._pid == os.getpid():
            fairy.close()  # detached: the driver's connection is closed

    def close(self, *_: Any) -> None:
        with self.lock:
            self.close_locked()


#: connections inherited through a fork: kept unclosed (closing one in the child would
#: let SQLite touch the parent's files and locks)
_INHERITED: list[Any] = []
_HELD: weakref.WeakKeyDictionary[Engine, AppendConnection] = weakref.WeakKeyDictionary()
_HELD_LOCK = threading.Lock()


def append_connection(engine: Engine) -> AppendConnection | None:
    """The SQLite engine's :class:`AppendConnection`, or None when its pool is not a
    :class:`QueuePool` of a database file (``:memory:``: every connection is a database
    of its own, so single appends must use the pool's) or it is not SQLite."""
    held = _HELD.get(engine)
    if held is not None:
        return held
    if engine.dialect.name != "sqlite" or not isinstance(engine.pool, QueuePool):
        return None
    with _HELD_LOCK:
        held = _HELD.get(engine)
        if held is None:
            held = _HELD[engine] = AppendConnection()
            event.listen(engine, "engine_disposed", held.close)
    return held


def _unique_constraints() -> dict[tuple[str, frozenset[str]], str]:
    """(table, columns) -> constraint name, for every named unique constraint and unique
    index (``uq_events_idempotency_key`` is a partial unique index)."""
    out: dict[tuple[str, frozenset[str]], str] = {}
    for table in metadata.tables.values():
        uniques: list[UniqueConstraint | Index] = [
            c for c in table.constraints if isinstance(c, UniqueConstraint)]
        uniques += [i for i in table.indexes if i.unique]
        for c in uniques:
            if isinstance(c.name, str):
                out[(table.name, frozenset(col.name for col in c.columns))] = c.name
    return out


#: the value column of the table-valued function ``json_each``
_JSON_VALUE: ColumnClause[Any] = literal_column("value")


class SQLiteRecorder(Recorder):
    dialect = "sqlite"
    concurrent_writers = False
    tx_expression = literal_column("0")

    def __init__(self, engine: Engine) -> None:
        super().__init__(engine)
        #: the engine's held append connection (or None), looked up once, not per append
        self._held = append_connection(engine)

    def writing(self, conn: Connection) -> Connection:
        return conn.execution_options(sqlite_begin="IMMEDIATE")

    def any_of(self, column: Any, values: list[str]) -> Any:
        """As ``IN (SELECT value FROM json_each(?))``: one bound parameter, the values as
        one JSON array, instead of a parameter each (SQLAlchemy renders and binds each of
        an import batch's 2,000 keys one by one: a tenth of the importer's own time).
        SQLite still probes the column's index once per value."""
        return column.in_(select(_JSON_VALUE).select_from(
            func.json_each(literal(orjson.dumps(values).decode()))))

    def insert_if_absent(self, table: Table, values: dict[str, Any],
                         unique: Any) -> Insert:
        return sqlite_insert(table).values(**values).on_conflict_do_nothing(
            index_elements=list(unique))

    def readable(self, query: Select[Any], after: tuple[int, int] | None,
                 *, descending: bool = False) -> Select[Any]:
        # the database lock serialises writers: positions are already in commit order
        if after is not None:
            query = query.where(T.c.position > after[1])
        return query.order_by(T.c.position.desc() if descending else T.c.position)

    def append_one(self, row: dict[str, Any], after: Any) -> tuple[int, int] | None:
        """One statement in autocommit on the engine's append connection (see
        :class:`AppendConnection`): the same WAL commit as ``BEGIN``/``COMMIT``, without
        three statements around it, and without a pool check-out per event."""
        sql, params = ((_APPEND_AFTER, _after_values(row, after)) if after.version
                       else (_INSERT, _values(row)))
        held = self._held
        if held is None:
            return self._append_pooled(row, sql, params)
        with held.lock:
            dbapi = held.connection(self.engine)
            try:
                position = self._execute_append(dbapi, row, sql, params)
            except sqlite3.Error as exc:
                held.close_locked()  # the next append opens a fresh connection
                raise DBAPIError.instance(sql, params, exc, sqlite3.Error) from exc
        return None if position is None else (position, 0)

    def _execute_append(self, dbapi: Any, row: dict[str, Any], sql: str,
                        params: tuple[Any, ...]) -> int | None:
        """The append statement on a driver connection in autocommit: the row's position,
        or None when the previous event is not the assumed head or the version is taken;
        any other refused row raises :meth:`refusal`'s error."""
        try:
            position: int = dbapi.execute(sql, params).lastrowid
            if dbapi.in_transaction:  # never expected; the statement must not stay open
                dbapi.commit()
        except sqlite3.IntegrityError as exc:
            if str(exc) == _NO_PREVIOUS or self.violated_constraint(exc) == STREAM_VERSION:
                return None
            raise self.refusal(exc, row["stream"], row["version"] - 1, [row]) from None
        return position

    def _append_pooled(self, row: dict[str, Any], sql: str,
                       params: tuple[Any, ...]) -> tuple[int, int] | None:
        """:meth:`append_one` on the pool's raw connection (an in-memory database: each
        of its connections is a database of its own)."""
        raw = self.engine.raw_connection()
        dbapi: Any = raw.dbapi_connection
        # the driver in autocommit: SQLAlchemy leaves a pooled connection in its default
        # mode after an AUTOCOMMIT use, and there the driver would BEGIN implicitly (and
        # the pool's reset would roll the insert back)
        mode, dbapi.isolation_level = dbapi.isolation_level, None
        try:
            position = self._execute_append(dbapi, row, sql, params)
        except sqlite3.Error as exc:
            raise DBAPIError.instance(sql, params, exc, sqlite3.Error) from exc
        finally:
            dbapi.isolation_level = mode
            raw.close()
        return None if position is None else (position, 0)

    def bulk_insert(self, conn: Connection, rows: list[dict[str, Any]]) -> None:
        """Rows through the driver's executemany, values already in SQLite's storage
        format (what UTCDateTime and Date write), skipping per-row statement processing."""
        raw = conn.connection.dbapi_connection
        assert raw is not None
        try:
            raw.executemany(_INSERT, [_values(r) for r in rows])
        except sqlite3.IntegrityError as exc:
            raise self.refusal(exc, rows[0]["stream"], rows[0]["version"] - 1, rows) from None

    def recorded(self, r: Sequence[Any]) -> RecordedEvent:
        instant = _stored_instant
        return recorded_event((r[0], r[1], r[2], r[3], r[4], r[5], r[6], instant(r[7]),
                               _stored_day(r[8]), instant(r[9]), r[10], r[11], r[12], r[13]))

    def violated_constraint(self, exc: BaseException) -> str | None:
        """SQLite reports the columns of a violated unique constraint, not its name: the
        schema's metadata turns the columns back into the constraint's name."""
        orig = exc.orig if isinstance(exc, IntegrityError) else exc
        found = _UNIQUE_COLUMNS.search(str(orig))
        if found is None:
            return None
        qualified = [c.split(".") for c in found.group(1).split(", ")]
        table = qualified[0][0]
        return _unique_constraints().get((table, frozenset(c[1] for c in qualified)))
