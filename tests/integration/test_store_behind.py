"""Bulk rows written behind (``Writer.flush(behind=True)``): on PostgreSQL in a thread
while the caller goes on, its error raised at the next use of the connection and the
transaction rolled back; on SQLite written at once (a rollback between two rows of an
executemany would let the rest begin a transaction of their own)."""

from __future__ import annotations

import threading

import pytest

from events.errors import DuplicateIdempotencyKey
from events.store import EventStore
from events.store.writing import Writer
from tests.support.events import enrol, new_event, visit

VISIT = {"pain": True, "swelling": False, "functional_limitation": False}


def _taken_key(store: EventStore) -> None:
    store.append("P0001", 0, [enrol(), new_event("VisitRecorded", VISIT, key="k-1")])


def _reuse(w: Writer) -> None:
    """Buffer a bulk row that reuses the stored key k-1 (refused when written)."""
    w.append("P0002", 0, [enrol(), new_event("VisitRecorded", VISIT, key="k-1")],
             returning=False)


def test_a_refusal_behind_is_raised_at_the_next_use_and_nothing_is_kept(
        store: EventStore) -> None:
    _taken_key(store)
    background = store.recorder.background_bulk
    assert background is (store.dialect == "postgresql")
    returned = []
    with pytest.raises(DuplicateIdempotencyKey) as info, store.transaction() as w:
        w.append("P0003", 0, [enrol()], returning=False)
        _reuse(w)
        w.flush(behind=True)  # PostgreSQL: returns, the rows are written meanwhile
        returned.append(True)
        w.head("P0004")  # the next use of the connection waits for them, then raises
    assert returned == ([True] if background else [])  # SQLite: written, refused at once
    assert info.value.key == "k-1"
    assert store.count() == 2 and store.stream_version("P0003") == 0


def test_the_bodys_own_error_wins_over_a_refusal_behind(store: EventStore) -> None:
    _taken_key(store)
    with pytest.raises(RuntimeError, match="given up"), store.transaction() as w:
        _reuse(w)
        if store.recorder.background_bulk:
            w.flush(behind=True)  # refused meanwhile; waited for, dropped
        raise RuntimeError("given up")
    assert store.count() == 2


def test_rows_written_behind_are_committed_with_the_transaction(store: EventStore) -> None:
    with store.transaction() as w:
        w.append("P0001", 0, [enrol(), *(visit() for _ in range(99))], returning=False)
        w.flush(behind=True)
        w.append("P0002", 0, [enrol()], returning=False)  # buffered beside the write
    assert store.count() == 101 and store.stream_version("P0001") == 100
    assert store.verify() == []
    assert not [t for t in threading.enumerate() if t.name == "cno-bulk-insert"], \
        "no writing thread outlives its work"
