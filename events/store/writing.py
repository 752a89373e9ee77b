"""Writing to the event store: rows with their hash chain, one transaction, and the fast
paths for bulk rows (COPY on PostgreSQL, the driver's executemany on SQLite)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, select
from sqlalchemy.exc import IntegrityError

from events.envelope import (
    GENESIS,
    NewEvent,
    RecordedEvent,
    canonical_json,
    chain_hash,
    content_hash,
    dump_data,
)
from events.errors import ConcurrencyConflict, DuplicateIdempotencyKey, StoreError

if TYPE_CHECKING:
    from events.store.sql import EventStore


@dataclass(frozen=True, slots=True)
class Head:
    version: int
    hash: str



_COPY_COLUMNS = ("event_id", "stream", "version", "type", "schema_version", "occurred_at",
                 "occurred_on", "recorded_at", "recorded_by", "idempotency_key",
                 "content_hash", "data", "hash")
_COPY_SQL = f"COPY events (tx, {', '.join(_COPY_COLUMNS)}) FROM STDIN"
_SQLITE_INSERT = (f"INSERT INTO events (tx, {', '.join(_COPY_COLUMNS)}) "
                  f"VALUES (0, {', '.join('?' * len(_COPY_COLUMNS))})")


@lru_cache(maxsize=8192)
def _sqlite_instant(moment: datetime) -> str:
    """SQLAlchemy's SQLite DATETIME storage format, in UTC."""
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat(sep=" ",
                                                                timespec="microseconds")


def build_rows(stream: str, head: Head, new: Sequence[NewEvent]) -> list[dict[str, Any]]:
    """The rows for appending ``new`` after ``head``: versions, hash chain, content hashes."""
    rows: list[dict[str, Any]] = []
    prev = head.hash
    version = head.version
    for e in new:
        version += 1
        data_json = e.data_json if e.data_json is not None else canonical_json(dump_data(e.data))
        schema_version = type(e.data).schema_version
        h = chain_hash(prev, event_id=e.event_id, stream=stream, version=version,
                       event_type=e.type, schema_version=schema_version,
                       occurred_at=e.occurred_at, occurred_on=e.occurred_on,
                       recorded_at=e.recorded_at, recorded_by=e.recorded_by,
                       idempotency_key=e.idempotency_key, data_json=data_json)
        rows.append({
            "event_id": e.event_id, "stream": stream, "version": version, "type": e.type,
            "schema_version": schema_version, "occurred_at": e.occurred_at,
            "occurred_on": e.occurred_on, "recorded_at": e.recorded_at,
            "recorded_by": e.recorded_by, "idempotency_key": e.idempotency_key,
            "content_hash": e.content_hash or content_hash(e.type, stream, e.occurred_at,
                                                           data_json),
            "data": data_json.decode(), "hash": h,
        })
        prev = h
    return rows


def recorded_events(rows: list[dict[str, Any]], keys: Sequence[Any]) -> list[RecordedEvent]:
    return [RecordedEvent(
        key[0], key[1], row["event_id"], row["stream"], row["version"], row["type"],
        row["schema_version"], row["occurred_at"], row["occurred_on"], row["recorded_at"],
        row["recorded_by"], row["idempotency_key"], row["data"], row["hash"])
        for row, key in zip(rows, keys, strict=True)]


def refusal(exc: IntegrityError, stream: str, expected_version: int,
             rows: list[dict[str, Any]]) -> StoreError:
    text = str(exc.orig).lower()
    if "idempotency" in text:
        key = next((r["idempotency_key"] for r in rows if r["idempotency_key"]), "?")
        return DuplicateIdempotencyKey(str(key))
    if "version" in text or "stream" in text:
        return ConcurrencyConflict(stream, expected_version, None)
    return StoreError(f"the store refused the append: {exc.orig}")


class Writer:
    """Appends inside one transaction (see :meth:`EventStore.transaction`)."""

    def __init__(self, store: EventStore, conn: Connection) -> None:
        self.store = store
        self.conn = conn
        self.heads: dict[str, Head] = {}
        self._tx: int | None = None
        self._to_copy: list[dict[str, Any]] = []

    def flush(self) -> None:
        """Write rows buffered for COPY (called before the transaction commits)."""
        if self._to_copy:
            rows, self._to_copy = self._to_copy, []
            try:
                self._copy(rows)
            except IntegrityError as exc:
                for stream in {r["stream"] for r in rows}:
                    self.store.forget(stream)
                raise refusal(exc, rows[0]["stream"], rows[0]["version"] - 1, rows) from None

    def head(self, stream: str) -> Head:
        if stream in self.heads:
            return self.heads[stream]
        return self.store.head(stream, conn=self.conn)

    def prefetch_heads(self, streams: Iterable[str]) -> None:
        """Read the heads of many streams in a few queries (imports touch hundreds)."""
        names = set(streams)
        found = self.store.heads(names, conn=self.conn)
        self.heads.update({s: found.get(s, Head(0, GENESIS)) for s in names})

    def append(self, stream: str, expected_version: int, new: Sequence[NewEvent], *,
               returning: bool = True) -> list[RecordedEvent]:
        if not new:
            return []
        head = self.head(stream)
        if head.version != expected_version:
            raise ConcurrencyConflict(stream, expected_version, head.version)
        rows = build_rows(stream, head, new)
        try:
            if returning:
                keys = self.conn.execute(self.store.insert_returning, rows).all()
            elif self.store.is_postgres:
                self._to_copy.extend(rows)  # one COPY for the whole transaction: flush()
                keys = []
            else:
                self._executemany_sqlite(rows)
                keys = []
        except IntegrityError as exc:
            self.store.forget(stream)
            raise refusal(exc, stream, expected_version, rows) from None
        self.heads[stream] = Head(rows[-1]["version"], rows[-1]["hash"])
        return recorded_events(rows, keys) if returning else []

    def _executemany_sqlite(self, rows: list[dict[str, Any]]) -> None:
        """Bulk rows through the driver's executemany, values already in SQLite's storage
        format (what UTCDateTime and Date write), skipping per-row ORM-level processing."""
        raw = self.conn.connection.dbapi_connection
        assert raw is not None
        raw.executemany(_SQLITE_INSERT, [(
            r["event_id"], r["stream"], r["version"], r["type"], r["schema_version"],
            _sqlite_instant(r["occurred_at"]), r["occurred_on"].isoformat(),
            _sqlite_instant(r["recorded_at"]), r["recorded_by"], r["idempotency_key"],
            r["content_hash"], r["data"], r["hash"]) for r in rows])

    def _copy(self, rows: list[dict[str, Any]]) -> None:
        """Bulk rows through COPY (PostgreSQL), inside this transaction."""
        if self._tx is None:
            self._tx = int(self.conn.execute(select(self.store.tx_expression)).scalar_one())
        raw = self.conn.connection.dbapi_connection
        assert raw is not None
        with raw.cursor() as cur, cur.copy(_COPY_SQL) as copy:  # type: ignore[attr-defined]
            for r in rows:
                copy.write_row((self._tx, *(r[c] for c in _COPY_COLUMNS)))
