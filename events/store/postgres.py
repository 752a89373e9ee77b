"""The PostgreSQL recorder: concurrent writers, row locks, advisory locks, COPY."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from operator import itemgetter
from typing import Any

import psycopg
from sqlalchemy import (
    ARRAY,
    Connection,
    Select,
    String,
    Table,
    func,
    literal,
    literal_column,
    select,
    text,
    tuple_,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.sql.dml import Insert
from sqlalchemy.sql.elements import ColumnClause

from events.envelope import RecordedEvent, recorded_event
from events.store.recorder import BULK_COLUMNS, STREAM_VERSION, Recorder
from events.store.tables import events as T

#: binary: the server does not parse text back into timestamps and integers, and psycopg
#: packs a row in a third of the time it formats one as text (50k rows: 0.07 s, not 0.19)
_COPY = f"COPY events (tx, {', '.join(BULK_COLUMNS)}) FROM STDIN (FORMAT BINARY)"
#: a row's BULK_COLUMNS values as one tuple, in one C call (a generator over the
#: thirteen keys cost 0.2 s of a 50k-line import)
_VALUES = itemgetter(*BULK_COLUMNS)
#: the wire types of ``tx`` and BULK_COLUMNS, in order (binary COPY sends no type names)
_COPY_TYPES = ("int8", "varchar", "varchar", "int4", "varchar", "int4", "timestamptz",
               "date", "timestamptz", "varchar", "varchar", "varchar", "text", "varchar")

_TX = "pg_current_xact_id()::text::bigint"
_COLUMNS = ", ".join(BULK_COLUMNS)
_PARAMS = ", ".join(["%s"] * len(BULK_COLUMNS))
#: one event, its own transaction: the first of its stream / after a head the database checks
_APPEND_FIRST = (f"INSERT INTO events (tx, {_COLUMNS}) VALUES ({_TX}, {_PARAMS}) "
                 "RETURNING position, tx")
_APPEND_AFTER = (f"INSERT INTO events (tx, {_COLUMNS}) SELECT {_TX}, {_PARAMS} WHERE EXISTS "
                 "(SELECT 1 FROM events WHERE stream = %s AND version = %s AND hash = %s) "
                 "RETURNING position, tx")

#: the columns whose statistics plans use: the readers' (tx, position) order, stream and
#: type filters, audit's time ranges. The row count is refreshed whatever the list. Left
#: out: unique look-ups (event_id, idempotency_key: one row at most, so no statistic
#: changes a plan) and columns never filtered on, ``data`` above all: sampling its wide
#: texts made three quarters of the cost (50k events: 0.21 s for the table, 0.05 s for these)
ANALYSED = ("tx", "position", "stream", "type", "recorded_at")
#: a bulk write analyses when it adds at least this share of the rows the planner last
#: counted (``pg_class.reltuples``), as autovacuum's default ``analyze_scale_factor``
#: does. Below it the statistics are still close, and autovacuum catches up in the
#: background: at millions of events an ANALYZE after every 50k-line import read 30,000
#: heap pages that were not in shared buffers (the import's per-event cost grew 15 %).
STALE_SHARE = 0.1
_PLANNED_ROWS = text("SELECT reltuples FROM pg_class WHERE oid = 'events'::regclass")

#: at most this many rows go out as one INSERT rather than through COPY
SMALL_INSERT = 64
_INSERT_ROW = f"INSERT INTO events (tx, {_COLUMNS}) VALUES ({_TX}, {_PARAMS})"

#: the exclusive upper bound of ``tx`` a reader may read, see sql.py's module doc
READ_BOUND: ColumnClause[Any] = literal_column("""(
    SELECT LEAST(
        pg_snapshot_xmax(s)::text::bigint,
        (SELECT min(x::text::bigint) FROM pg_snapshot_xip(s) AS x
          WHERE (x::text::bigint % 4294967296) NOT IN (
            SELECT backend_xid::text::bigint FROM pg_stat_activity
             WHERE backend_xid IS NOT NULL
               AND datname IS DISTINCT FROM current_database())))
    FROM pg_current_snapshot() AS s)""")


def _utc(moment: datetime) -> datetime:
    """The engine's sessions run in UTC (engine.py), so psycopg returns UTC already."""
    return moment if moment.tzinfo is UTC else moment.astimezone(UTC)


class PostgresRecorder(Recorder):
    dialect = "postgresql"
    concurrent_writers = True
    tx_expression = literal_column("pg_current_xact_id()::text::bigint")

    def lock_rows(self, query: Select[Any]) -> Select[Any]:
        return query.with_for_update()

    def claim_rows(self, query: Select[Any]) -> Select[Any]:
        return query.with_for_update(skip_locked=True)

    @contextmanager
    def exclusive(self, key: int) -> Iterator[bool]:
        """A session advisory lock: the server drops it if the holder's connection dies."""
        with self.engine.connect() as conn:
            got = bool(conn.execute(text("SELECT pg_try_advisory_lock(:k)"),
                                    {"k": key}).scalar())
            conn.commit()
            try:
                yield got
            finally:
                if got:
                    conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                    conn.commit()

    def insert_if_absent(self, table: Table, values: dict[str, Any],
                         unique: Any) -> Insert:
        return pg_insert(table).values(**values).on_conflict_do_nothing(
            index_elements=list(unique))

    def any_of(self, column: Any, values: list[str]) -> Any:
        """As ``IN (SELECT unnest(array))``: one bound parameter whatever the count, and a
        semi-join the planner can hash. (``= ANY(array)`` compares every row with every
        element when the table's statistics are stale, as right after a bulk import:
        seconds per query.)"""
        return column.in_(select(func.unnest(literal(values, ARRAY(String)))))

    def readable(self, query: Select[Any], after: tuple[int, int] | None,
                 *, descending: bool = False) -> Select[Any]:
        query = query.where(T.c.tx < READ_BOUND)
        if after is not None:
            query = query.where(
                tuple_(T.c.tx, T.c.position) > tuple_(literal(after[0]), literal(after[1])))
        if descending:
            return query.order_by(T.c.tx.desc(), T.c.position.desc())
        return query.order_by(T.c.tx, T.c.position)

    def analyze(self, conn: Connection, written: int | None = None) -> None:
        if written is not None:
            # -1 for a table never analysed, 0 for one analysed empty: both are stale
            planned = conn.execute(_PLANNED_ROWS).scalar_one()
            if planned > 0 and written < STALE_SHARE * planned:
                return
        conn.execute(text(f"ANALYZE events ({', '.join(ANALYSED)})"))

    def append_one(self, row: dict[str, Any], after: Any) -> tuple[int, int] | None:
        """One statement on the pool's raw connection in autocommit: one round trip
        (``BEGIN``, a head ``SELECT``, ``INSERT``, ``COMMIT`` were four), one commit."""
        values = _VALUES(row)
        sql, params = ((_APPEND_AFTER, (*values, row["stream"], after.version, after.hash))
                       if after.version else (_APPEND_FIRST, values))
        raw = self.engine.raw_connection()
        dbapi = raw.dbapi_connection
        assert dbapi is not None
        try:
            dbapi.autocommit = True
            cur = dbapi.cursor()
            try:
                cur.execute(sql, params)
                keys = cur.fetchall()
            finally:
                cur.close()
        except psycopg.errors.IntegrityError as exc:
            if self.violated_constraint(exc) == STREAM_VERSION:
                return None
            raise self.refusal(exc, row["stream"], row["version"] - 1, [row]) from None
        except psycopg.Error as exc:
            broken = bool(dbapi.closed) or isinstance(exc, psycopg.OperationalError)
            if broken:
                raw.invalidate(exc)
            raise DBAPIError.instance(sql, params, exc, psycopg.Error,
                                      connection_invalidated=broken) from exc
        finally:
            if not dbapi.closed:
                dbapi.autocommit = False
            raw.close()
        return (int(keys[0][0]), int(keys[0][1])) if keys else None

    def bulk_insert(self, conn: Connection, rows: list[dict[str, Any]]) -> None:
        """Rows through COPY, inside the caller's transaction; a few rows (a listener's
        group commit) as pipelined INSERTs instead: one round trip, where COPY needs the
        transaction id read first and then its own exchange."""
        raw = conn.connection.dbapi_connection
        assert raw is not None
        try:
            if len(rows) <= SMALL_INSERT:
                # one statement text whatever the count: psycopg keeps it parsed and
                # prepared, and sends the rows pipelined (one round trip)
                with raw.cursor() as cur:  # type: ignore[attr-defined]
                    cur.executemany(_INSERT_ROW, [_VALUES(r) for r in rows])
                return
            tx = int(conn.execute(select(self.tx_expression)).scalar_one())
            with raw.cursor() as cur, cur.copy(_COPY) as copy:  # type: ignore[attr-defined]
                copy.set_types(_COPY_TYPES)
                write = copy.write_row
                for r in rows:
                    write((tx, *_VALUES(r)))
        except psycopg.errors.IntegrityError as exc:
            # psycopg's own error: COPY bypasses SQLAlchemy's exception wrapping
            raise self.refusal(exc, rows[0]["stream"], rows[0]["version"] - 1, rows) from None

    def recorded(self, r: Sequence[Any]) -> RecordedEvent:
        return recorded_event((r[0], r[1], r[2], r[3], r[4], r[5], r[6], _utc(r[7]), r[8],
                               _utc(r[9]), r[10], r[11], r[12], r[13]))

    def violated_constraint(self, exc: BaseException) -> str | None:
        orig = exc.orig if isinstance(exc, IntegrityError) else exc
        diag = getattr(orig, "diag", None)
        name = getattr(diag, "constraint_name", None)
        return name if isinstance(name, str) else None
