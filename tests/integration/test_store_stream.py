"""Bulk rows streamed (``Writer.open_stream``): on PostgreSQL into one COPY left open
while the caller goes on, closed by the next use of the connection; on SQLite buffered as
usual. A refusal is the store's error; a failure while it is open rolls everything back
and leaves the connection usable."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from events.errors import DuplicateIdempotencyKey
from events.store import EventStore
from tests.support.events import enrol, new_event, visit

VISIT = {"pain": True, "swelling": False, "functional_limitation": False}


def _taken_key(store: EventStore) -> None:
    store.append("P0001", 0, [enrol(), new_event("VisitRecorded", VISIT, key="k-1")])


def _copying(store: EventStore) -> bool:
    """Whether another session of this database is inside a COPY into events."""
    with store.engine.connect() as conn:
        return bool(conn.execute(text(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND query LIKE 'COPY events%' AND state = 'active'")).scalar())


def test_streamed_rows_are_committed_with_the_transaction(store: EventStore) -> None:
    with store.transaction() as w:
        w.prefetch_heads(["P0001"])  # read before: reading a head would close the stream
        w.open_stream()
        w.append("P0001", 0, [enrol(), *(visit() for _ in range(99))], returning=False)
        w.append("P0001", 100, [visit()], returning=False)  # the head is known: no query
        if store.dialect == "postgresql":
            assert _copying(store), "the rows went into an open COPY"
        assert w.head("P0002").version == 0  # a query: the stream is closed first
        w.append("P0002", 0, [enrol()], returning=False)  # buffered after it
    assert store.count() == 102 and store.stream_version("P0001") == 101
    assert store.verify() == []


def test_a_refusal_in_a_stream_is_the_stores_error_and_keeps_nothing(
        store: EventStore) -> None:
    _taken_key(store)
    with pytest.raises(DuplicateIdempotencyKey) as info, store.transaction() as w:
        w.prefetch_heads(["P0002", "P0003"])
        w.open_stream()
        w.append("P0003", 0, [enrol()], returning=False)
        w.append("P0002", 0, [enrol(), new_event("VisitRecorded", VISIT, key="k-1")],
                 returning=False)
        w.head("P0004")  # closing the stream: the server's refusal arrives
    assert info.value.key == "k-1"
    assert store.count() == 2 and store.stream_version("P0003") == 0


@pytest.mark.parametrize("failure", [RuntimeError, KeyboardInterrupt])
def test_a_failure_while_streaming_rolls_back_and_the_store_goes_on(
        store: EventStore, failure: type[BaseException]) -> None:
    with pytest.raises(failure), store.transaction() as w:
        w.prefetch_heads(["P0001"])
        w.open_stream()
        w.append("P0001", 0, [enrol(), *(visit() for _ in range(50))], returning=False)
        assert store.dialect != "postgresql" or _copying(store)
        raise failure("given up")
    assert store.count() == 0
    store.append("P0001", 0, [enrol()])  # the pooled connection was left usable
    assert store.count() == 1 and store.verify() == []
