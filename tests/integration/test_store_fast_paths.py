"""The store's fast paths keep its promises: a single append goes out as one statement the
database checks against the head the store remembers, and reads skip SQLAlchemy's result
processing; both must give exactly what the ordinary paths give."""

from __future__ import annotations

from datetime import UTC, date, timedelta

import pytest
from sqlalchemy import select

from events.errors import ConcurrencyConflict, DuplicateIdempotencyKey
from events.store import START, EventStore
from events.store.engine import make_engine
from events.store.tables import events as T
from events.store.types import Head
from tests.support.events import T0, enrol, new_event, visit


def _other(store: EventStore) -> EventStore:
    return EventStore(make_engine(store.engine.url.render_as_string(hide_password=False)))


def test_single_appends_chain_like_a_batch(store: EventStore) -> None:
    store.append("P0001", 0, [enrol()])
    for v in range(1, 6):
        [e] = store.append("P0001", v, [visit(pain=v % 2 == 0)])
        assert e.version == v + 1 and e.stream == "P0001"
    assert [e.version for e in store.read_stream("P0001")] == [1, 2, 3, 4, 5, 6]
    assert store.verify() == []


def test_a_remembered_head_with_a_wrong_hash_is_not_trusted(store: EventStore) -> None:
    """The hint names v1 with a hash the stored v1 does not have (a restored database,
    say): the database refuses the one-statement append and the ordinary path, reading
    the head, chains the event to the real v1."""
    store.append("P0001", 0, [enrol()])
    store._hints["P0001"] = Head(1, "f" * 64)
    [e] = store.append("P0001", 1, [visit()])
    assert e.version == 2
    assert store.verify() == []


def test_a_remembered_head_beyond_the_stored_one_is_a_conflict(store: EventStore) -> None:
    store.append("P0001", 0, [enrol()])
    store._hints["P0001"] = Head(2, "e" * 64)  # an event this database never stored
    with pytest.raises(ConcurrencyConflict) as info:
        store.append("P0001", 2, [visit()])
    assert info.value.actual == 1
    assert store.count() == 1 and store.verify() == []


def test_a_stale_hint_after_another_store_appended(store: EventStore) -> None:
    other = _other(store)
    try:
        store.append("P0001", 0, [enrol()])
        store.append("P0001", 1, [visit()])  # store remembers v2
        other.append("P0001", 2, [visit(pain=False)])  # v3, unknown to store
        with pytest.raises(ConcurrencyConflict) as info:
            store.append("P0001", 2, [visit()])
        assert info.value.actual == 3
        [e] = store.append("P0001", 3, [visit()])  # re-read: appends after v3
        assert e.version == 4 and store.verify() == []
    finally:
        other.engine.dispose()


def test_a_rolled_back_transaction_leaves_no_hint(store: EventStore) -> None:
    store.append("P0001", 0, [enrol()])
    with pytest.raises(RuntimeError), store.transaction() as w:
        w.append("P0001", 1, [visit()])
        raise RuntimeError("abandon")
    assert store._hints.get("P0001", Head(1, "")).version == 1
    [e] = store.append("P0001", 1, [visit(pain=False)])
    assert e.version == 2 and store.verify() == []


def test_single_append_refusals_are_typed(store: EventStore) -> None:
    store.append("P0001", 0, [enrol()])
    with pytest.raises(ConcurrencyConflict):
        store.append("P0001", 0, [enrol()])
    store.append("P0001", 1, [new_event("VisitRecorded", {
        "pain": True, "swelling": False, "functional_limitation": False}, key="k-1")])
    with pytest.raises(DuplicateIdempotencyKey):
        store.append("P0001", 2, [new_event("VisitRecorded", {
            "pain": False, "swelling": False, "functional_limitation": False}, key="k-1")])
    assert store.stream_version("P0001") == 2 and store.verify() == []


def test_fast_reads_equal_the_ordinary_path(store: EventStore) -> None:
    store.append("P0001", 0, [enrol(), visit(occurred=T0 + timedelta(days=3, hours=5))])
    store.append("P0002", 0, [enrol()])
    fast = store.read_batch(START, 100)
    with store.engine.connect() as conn:  # no transaction begun: the SQLAlchemy path
        ordinary = store.read_batch(START, 100, conn=conn)
    assert fast == ordinary and len(fast) == 3
    for e in fast:
        assert e.occurred_at.tzinfo is UTC and e.recorded_at.tzinfo is UTC
        assert type(e.occurred_on) is date
    assert fast[1].occurred_at == T0 + timedelta(days=3, hours=5)
    assert list(store.read_all(batch_size=2)) == fast
    assert store.read_stream("P0001") == fast[:2]
    # a datetime bound value takes the ordinary path, with the same result
    assert store.read_stream("P0001", known_at=T0 + timedelta(days=1)) == fast[:2]
    assert store.get_events([fast[2].event_id]) == {fast[2].event_id: fast[2]}
    with store.engine.begin() as conn:  # inside a transaction: the driver's rows
        assert store.read_batch(START, 100, conn=conn) == fast
        conn.execute(select(T.c.position).limit(1)).all()
    assert [e.data for e in fast] == [e.data for e in ordinary]


def test_single_appends_between_reads_are_committed(store: EventStore) -> None:
    """A pooled connection used for an autocommit read, then for a one-statement append:
    the append is committed (another engine sees it), not rolled back by the pool."""
    other = _other(store)
    try:
        store.append("P0001", 0, [enrol()])
        for v in range(1, 4):
            assert store.stream_version("P0001") == v  # an autocommit read first
            store.append("P0001", v, [visit()])
            assert other.stream_version("P0001") == v + 1
        assert len(list(other.read_all())) == 4 and other.verify() == []
    finally:
        other.engine.dispose()


def test_sqlite_single_appends_hold_one_connection_per_engine(db_url: str) -> None:
    """SQLite: the single appends of every store on an engine share one held connection,
    closed when the engine is disposed (the next append opens another) and after a driver
    error (the append that met it fails; the next one works)."""
    from sqlalchemy.exc import DBAPIError

    from events.store.sqlite import append_connection
    engine = make_engine(db_url)
    try:
        held = append_connection(engine)
        if engine.dialect.name != "sqlite":
            assert held is None
            return
        assert held is not None
        a, b = EventStore(engine), EventStore(engine)
        a.append("P0001", 0, [enrol()])
        first = held.connection(engine)
        b.append("P0002", 0, [enrol()])
        assert held.connection(engine) is first
        engine.dispose()
        a.append("P0001", 1, [visit()])
        second = held.connection(engine)
        assert second is not first
        second.close()  # a broken connection: the append fails, typed as SQLAlchemy's
        with pytest.raises(DBAPIError):
            a.append("P0001", 2, [visit()])
        a.append("P0001", 2, [visit()])
        assert held.connection(engine) is not second
        assert [e.version for e in a.read_stream("P0001")] == [1, 2, 3]
        assert a.verify() == []
    finally:
        engine.dispose()


def test_sqlite_in_memory_single_appends_use_the_pool() -> None:
    """An in-memory database is one per connection: no held connection there."""
    from events.store.sqlite import append_connection
    engine = make_engine("sqlite://")
    try:
        assert append_connection(engine) is None
    finally:
        engine.dispose()


def test_sqlite_single_append_is_one_plain_insert(db_url: str) -> None:
    """SQLite: the database-checked append reads the previous event inside a plain
    ``INSERT ... VALUES`` (its version, NULL when the assumed event/hash is not stored),
    so SQLite copies the row through no temporary b-tree (an ``INSERT ... SELECT`` from
    the table it writes to, or a RETURNING clause, does) and the position is the rowid;
    a wrong assumed hash is still refused by the database itself."""
    from events.store.sqlite import _APPEND_AFTER, _INSERT, append_connection
    from events.store.writing import build_rows
    engine = make_engine(db_url)
    try:
        if engine.dialect.name != "sqlite":
            return
        store = EventStore(engine)
        [first] = store.append("P0001", 0, [enrol()])
        held = append_connection(engine)
        assert held is not None
        conn = held.connection(engine)
        for sql, n in ((_APPEND_AFTER, 15), (_INSERT, 13)):
            ops = [r[1] for r in conn.execute(f"EXPLAIN {sql}", [None] * n)]
            assert "OpenEphemeral" not in ops
        [row] = build_rows("P0001", Head(1, first.hash), [visit()])
        assert store.recorder.append_one(row, Head(1, "f" * 64)) is None
        assert store.recorder.append_one(row, Head(1, first.hash)) == (first.position + 1, 0)
        assert [e.version for e in store.read_stream("P0001")] == [1, 2]
        assert store.verify() == []
    finally:
        engine.dispose()
