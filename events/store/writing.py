"""Writing to the event store: rows with their hash chain, and appends inside one
transaction (bulk rows go through the recorder's fast path: COPY, executemany)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.exc import IntegrityError

from events.envelope import (
    GENESIS,
    NewEvent,
    PreparedEvent,
    RecordedEvent,
    canonical_json,
    chain_hash,
    content_hash,
    dump_data,
    recorded_event,
)
from events.errors import ConcurrencyConflict
from events.store.recorder import Recorder
from events.store.types import Head

__all__ = ["Appendable", "Head", "Writer", "build_rows", "recorded_events"]

#: buffered bulk rows go out in statements of this many
BULK_ROWS = 5000


#: what an append takes: events with their data model, or with it already serialised
Appendable = NewEvent | PreparedEvent


def build_rows(stream: str, head: Head, new: Sequence[Appendable]) -> list[dict[str, Any]]:
    """The rows for appending ``new`` after ``head``: versions, hash chain, content hashes."""
    rows: list[dict[str, Any]] = []
    prev = head.hash
    version = head.version
    for e in new:
        version += 1
        if isinstance(e, NewEvent):
            data_json = (e.data_json if e.data_json is not None
                         else canonical_json(dump_data(e.data)))
            schema_version = type(e.data).schema_version
        else:
            data_json, schema_version = e.data_json, e.schema_version
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
    """The stored events of ``rows`` at ``keys`` (position, tx), made as a read makes
    them (:func:`recorded_event`: no frozen ``__setattr__`` per field)."""
    return [recorded_event((
        key[0], key[1], row["event_id"], row["stream"], row["version"], row["type"],
        row["schema_version"], row["occurred_at"], row["occurred_on"], row["recorded_at"],
        row["recorded_by"], row["idempotency_key"], row["data"], row["hash"]))
        for row, key in zip(rows, keys, strict=True)]


class Writer:
    """Appends inside one transaction (see :meth:`EventStore.transaction`).

    Heads come from the database through this transaction's connection, so what another
    process appended is always seen; the heads this transaction moved are kept here."""

    def __init__(self, recorder: Recorder, conn: Connection) -> None:
        self.recorder = recorder
        self.conn = conn
        self.heads: dict[str, Head] = {}
        #: events appended through this writer (the store analyses after large ones)
        self.written = 0
        self._bulk: list[dict[str, Any]] = []

    def flush(self) -> None:
        """Write the buffered bulk rows (done before the transaction commits)."""
        if self._bulk:
            rows, self._bulk = self._bulk, []
            self.recorder.bulk_insert(self.conn, rows)

    def head(self, stream: str) -> Head:
        if stream not in self.heads:  # read once: a later append checks against it
            self.heads[stream] = self.recorder.head(self.conn, stream)
        return self.heads[stream]

    def prefetch_heads(self, streams: Iterable[str]) -> None:
        """Read the heads of many streams in a few queries (imports touch hundreds)."""
        names = set(streams) - self.heads.keys()
        found = self.recorder.heads(self.conn, names)
        self.heads.update({s: found.get(s, Head(0, GENESIS)) for s in names})

    def append(self, stream: str, expected_version: int, new: Sequence[Appendable], *,
               returning: bool = True) -> list[RecordedEvent]:
        """Append to ``stream`` at ``expected_version``. ``returning=False`` buffers the
        rows for the bulk path (written by :meth:`flush`) and returns nothing."""
        if not new:
            return []
        head = self.head(stream)
        if head.version != expected_version:
            raise ConcurrencyConflict(stream, expected_version, head.version)
        rows = build_rows(stream, head, new)
        self.written += len(rows)
        if not returning:
            self.heads[stream] = Head(rows[-1]["version"], rows[-1]["hash"])
            self._bulk.extend(rows)
            if len(self._bulk) >= BULK_ROWS:
                self.flush()
            return []
        try:
            keys = self.conn.execute(self.recorder.insert_returning, rows).all()
        except IntegrityError as exc:
            raise self.recorder.refusal(exc, stream, expected_version, rows) from None
        self.heads[stream] = Head(rows[-1]["version"], rows[-1]["hash"])
        return recorded_events(rows, keys)
