"""The append-only store on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from events.envelope import GENESIS, canonical_json, chain_hash, content_hash
from events.errors import ConcurrencyConflict, DuplicateIdempotencyKey
from events.store import START, Checkpoint, EventStore
from events.store.engine import make_engine
from events.vocabulary import VisitRecorded
from tests.support.events import T0, enrol, new_event, visit


def test_append_and_read_back_in_order(store: EventStore) -> None:
    stored = store.append("P0001", 0, [enrol(), visit(), visit(pain=False)])
    assert [e.version for e in stored] == [1, 2, 3]
    assert stored[0].position < stored[1].position < stored[2].position
    events = store.read_stream("P0001")
    assert [e.type for e in events] == ["PatientEnrolled", "VisitRecorded", "VisitRecorded"]
    assert isinstance(events[1].data, VisitRecorded) and events[1].data.pain is True
    assert events[0].occurred_at.tzinfo is not None
    assert store.stream_version("P0001") == 3
    assert store.verify() == []


def test_wrong_expected_version_is_a_typed_conflict(store: EventStore) -> None:
    store.append("P0001", 0, [enrol()])
    with pytest.raises(ConcurrencyConflict) as info:
        store.append("P0001", 0, [visit()])
    assert info.value.actual == 1
    assert store.stream_version("P0001") == 1


def test_concurrent_writers_at_the_same_version_one_wins(db_url: str) -> None:
    """Two stores (two processes' worth of caches) both read version 1 and append."""
    a, b = EventStore(make_engine(db_url)), EventStore(make_engine(db_url))
    a.append("P0001", 0, [enrol()])
    assert len(b.read_stream("P0001")) == 1  # b decides on what it read: version 1
    a.append("P0001", 1, [visit()])
    with pytest.raises(ConcurrencyConflict):
        b.append("P0001", 1, [visit(pain=False)])
    assert [e.version for e in a.read_stream("P0001")] == [1, 2]
    assert a.read_stream("P0001")[1].data.pain is True
    assert a.verify() == []


def test_a_batch_is_one_transaction(store: EventStore) -> None:
    store.append("P0002", 0, [enrol()])
    with pytest.raises(ConcurrencyConflict), store.transaction() as w:
        w.append("P0001", 0, [enrol(), visit()])
        w.append("P0002", 0, [visit()])  # wrong: P0002 is at 1
    assert store.stream_version("P0001") == 0
    assert store.count() == 1


def test_duplicate_idempotency_key_is_refused(store: EventStore) -> None:
    store.append("P0001", 0, [enrol(), new_event("VisitRecorded", {
        "pain": True, "swelling": False, "functional_limitation": False}, key="k1")])
    with pytest.raises(DuplicateIdempotencyKey):
        store.append("P0001", 2, [new_event("VisitRecorded", {
            "pain": False, "swelling": False, "functional_limitation": False}, key="k1")])
    assert store.count() == 2


@pytest.mark.parametrize("statement", [
    "UPDATE events SET recorded_by = 'mallory'",
    "DELETE FROM events",
])
def test_the_database_refuses_update_and_delete(store: EventStore, statement: str) -> None:
    store.append("P0001", 0, [enrol(), visit()])
    with pytest.raises(DBAPIError, match="append-only"), store.engine.begin() as conn:
        conn.execute(text(statement))
    assert store.count() == 2


def test_truncate_refused_on_postgres(pg_url: str) -> None:
    s = EventStore(make_engine(pg_url))
    s.append("P0001", 0, [enrol()])
    with pytest.raises(DBAPIError, match="append-only"), s.engine.begin() as conn:
        conn.execute(text("TRUNCATE events"))
    assert s.count() == 1


def _tamper(store: EventStore, sql: str) -> None:
    """Bypass the triggers as a superuser would, and alter history."""
    with store.engine.begin() as conn:
        if store.dialect == "postgresql":
            conn.execute(text("SET LOCAL session_replication_role = replica"))
            conn.execute(text(sql))
        else:
            conn.execute(text("DROP TRIGGER events_no_update"))
            conn.execute(text(sql))


def test_verify_names_the_altered_event(store: EventStore) -> None:
    store.append("P0001", 0, [enrol(), visit(), visit(pain=False)])
    store.append("P0002", 0, [enrol(), visit()])
    target = store.read_stream("P0001")[1]
    # the visit's pain becomes false: a clinically meaningful rewrite of history
    _tamper(store, "UPDATE events SET data = replace(data, 'true,\"swelling\"', "
                   f"'false,\"swelling\"') WHERE event_id = '{target.event_id}'")
    assert store.read_stream("P0001")[1].data.pain is False
    breaks = store.verify()
    assert [(b.stream, b.version, b.event_id) for b in breaks] == [
        ("P0001", 2, target.event_id)]
    assert "hash" in breaks[0].reason


def test_verify_names_a_rewritten_hash_and_its_successor(store: EventStore) -> None:
    store.append("P0001", 0, [enrol(), visit(), visit(pain=False)])
    second = store.read_stream("P0001")[1]
    _tamper(store, f"UPDATE events SET hash = '{'f' * 64}' WHERE event_id = '{second.event_id}'")
    assert [(b.stream, b.version) for b in store.verify()] == [("P0001", 2), ("P0001", 3)]


def test_read_all_follows_the_global_order_in_batches(store: EventStore) -> None:
    for i in range(1, 6):
        store.append(f"P000{i}", 0, [enrol(), visit()])
    everything = list(store.read_all(batch_size=3))
    assert len(everything) == 10
    assert len({e.event_id for e in everything}) == 10
    positions = [e.position for e in everything]
    assert positions == sorted(positions)
    middle = everything[4]
    rest = list(store.read_all(Checkpoint(middle.tx, middle.position), batch_size=2))
    assert [e.event_id for e in rest] == [e.event_id for e in everything[5:]]
    assert store.read_batch(START, 1)[0].event_id == everything[0].event_id


def test_known_at_hides_what_was_recorded_later(store: EventStore) -> None:
    early = visit(recorded=T0 + timedelta(days=1))
    late = visit(pain=False, recorded=T0 + timedelta(days=10))
    store.append("P0001", 0, [enrol(), early, late])
    as_known = store.read_stream("P0001", known_at=T0 + timedelta(days=5))
    assert [e.event_id for e in as_known][-1] == early.event_id
    assert len(as_known) == 2
    assert len(list(store.read_all(known_at=T0 + timedelta(days=5)))) == 2


def test_a_stored_v1_payload_is_upcast_on_read(store: EventStore) -> None:
    """VisitRecorded v1 wrote active lesions as "site:side" strings."""
    store.append("P0001", 0, [enrol()])
    head = store.head("P0001")
    payload = canonical_json({"pain": True, "swelling": False, "functional_limitation": False,
                              "active_lesions": ["clavicle:left", "tibia"]})
    event_id = "00000000-0000-4000-8000-000000000001"
    fields = dict(event_id=event_id, stream="P0001", version=2, event_type="VisitRecorded",
                  schema_version=1, occurred_at=T0, occurred_on=T0.date(), recorded_at=T0,
                  recorded_by="legacy", idempotency_key=None, data_json=payload)
    with store.engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO events (tx, event_id, stream, version, type, schema_version, "
            "occurred_at, occurred_on, recorded_at, recorded_by, content_hash, data, hash) "
            "VALUES (0, :id, 'P0001', 2, 'VisitRecorded', 1, :t, :d, :t, 'legacy', :ch, "
            ":data, :h)"),
            {"id": event_id, "t": T0 if store.dialect == "postgresql" else T0.replace(tzinfo=None),
             "d": T0.date(), "ch": content_hash("VisitRecorded", "P0001", T0, payload),
             "data": payload.decode(), "h": chain_hash(head.hash, **fields)})
    upcast = store.read_stream("P0001")[1]
    assert upcast.schema_version == 1
    assert isinstance(upcast.data, VisitRecorded)
    assert [(le.site, le.side) for le in upcast.data.active_lesions] == [
        ("clavicle", "left"), ("tibia", None)]
    assert store.verify() == []  # history kept as written: the chain still holds
    assert GENESIS == "0" * 64
