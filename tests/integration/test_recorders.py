"""One recorder per dialect: no head cache between stores, integrity errors mapped by
constraint name, stream kinds, and the capabilities callers use instead of the dialect."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import insert, select

from alerts.outbox import stream_of
from events.errors import ConcurrencyConflict, DuplicateIdempotencyKey, StoreError
from events.store import (
    ALERT,
    PATIENT,
    EventStore,
    is_patient_stream,
    kind_of,
    stream_name,
)
from events.store.engine import make_engine
from events.store.recorder import EVENT_ID
from events.store.tables import events as T
from events.store.writing import build_rows
from events.vocabulary import AlertCancelled
from tests.support.events import enrol, new_event, visit


@pytest.fixture
def two(db_url: str) -> Iterator[tuple[EventStore, EventStore]]:
    a, b = EventStore(make_engine(db_url)), EventStore(make_engine(db_url))
    yield a, b
    a.engine.dispose()
    b.engine.dispose()


def test_two_stores_on_one_database_stay_coherent(two: tuple[EventStore, EventStore]) -> None:
    """Issue 10 item 3: b saw version 1, a appends version 2, b appends at 2 at once."""
    a, b = two
    b.append("P0001", 0, [enrol()])
    assert b.stream_version("P0001") == 1
    a.append("P0001", 1, [visit()])
    assert b.stream_version("P0001") == 2
    stored = b.append("P0001", 2, [visit(pain=False)])
    assert [e.version for e in stored] == [3]
    assert a.stream_version("P0001") == 3 and a.verify() == []


def test_a_stale_expected_version_is_refused_after_the_other_store_appended(
        two: tuple[EventStore, EventStore]) -> None:
    a, b = two
    a.append("P0001", 0, [enrol()])
    b.append("P0001", 1, [visit()])
    with pytest.raises(ConcurrencyConflict) as info:
        a.append("P0001", 1, [visit()])
    assert info.value.actual == 2


def _rows(store: EventStore, stream: str, version: int, key: str | None = None
          ) -> list[dict[str, Any]]:
    head = store.head(stream)
    rows = build_rows(stream, head, [new_event("VisitRecorded", {
        "pain": True, "swelling": False, "functional_limitation": False}, key=key)])
    rows[0]["version"] = version
    return rows


def _violation(store: EventStore, rows: list[dict[str, Any]], *, bulk: bool
               ) -> BaseException:
    with pytest.raises(StoreError) as info, store.recorder.write() as conn:
        if bulk:
            store.recorder.bulk_insert(conn, rows)
        else:
            try:
                conn.execute(insert(T).values(tx=store.recorder.tx_expression), rows)
            except Exception as exc:  # the driver's error, as SQLAlchemy wraps it
                raise store.recorder.refusal(exc, "P0001", 1, rows) from None
    return info.value


@pytest.mark.parametrize("bulk,small", [(False, 64), (True, 64), (True, 0)],
                         ids=["statement", "bulk-insert", "bulk-copy"])
def test_integrity_errors_are_mapped_by_constraint_name(store: EventStore, bulk: bool,
                                                        small: int,
                                                        monkeypatch: pytest.MonkeyPatch
                                                        ) -> None:
    # PostgreSQL writes a few bulk rows as one INSERT, more through COPY: both refuse alike
    monkeypatch.setattr("events.store.postgres.SMALL_INSERT", small)
    first = store.append("P0001", 0, [enrol(), new_event("VisitRecorded", {
        "pain": True, "swelling": False, "functional_limitation": False},
        key="k-1")])
    taken_version = _violation(store, _rows(store, "P0001", 2), bulk=bulk)
    assert isinstance(taken_version, ConcurrencyConflict)
    taken_key = _violation(store, _rows(store, "P0001", 3, key="k-1"), bulk=bulk)
    assert isinstance(taken_key, DuplicateIdempotencyKey) and taken_key.key == "k-1"
    same_id = _rows(store, "P0001", 3)
    same_id[0]["event_id"] = first[0].event_id
    taken_id = _violation(store, same_id, bulk=bulk)
    assert type(taken_id) is StoreError and EVENT_ID in str(taken_id)
    assert store.count() == 2


def test_stream_kinds_are_read_from_the_name() -> None:
    assert kind_of("P0001") == PATIENT and is_patient_stream("P0001")
    assert kind_of(stream_of("3f2c")) == ALERT and not is_patient_stream(stream_of("3f2c"))
    assert stream_name(ALERT, "3f2c") == "alert:3f2c" == stream_of("3f2c")
    assert stream_name(PATIENT, "P0001") == "P0001"
    # kinds other parts of the application add need no registration
    assert kind_of(stream_name("account", "u-17")) == "account"
    assert kind_of("access:2026-12") == "access"
    with pytest.raises(ValueError):
        stream_name("a:b", "x")


def test_patient_streams_leave_out_every_other_kind(store: EventStore) -> None:
    store.append("P0001", 0, [enrol()])
    store.append("P0002", 0, [enrol()])
    alert = stream_of("00000000-0000-4000-8000-0000000000aa")
    for stream in (alert, "account:u-17"):
        store.append(stream, 0, [new_event("AlertCancelled", AlertCancelled(
            alert_id="00000000-0000-4000-8000-0000000000aa", reason="test"))])
    assert store.patient_streams() == ["P0001", "P0002"]
    assert store.streams(ALERT) == [alert]
    assert set(store.streams()) == {"P0001", "P0002", alert, "account:u-17"}


def test_capabilities_follow_the_dialect(store: EventStore) -> None:
    pg = store.dialect == "postgresql"
    assert store.recorder.concurrent_writers is pg
    q = store.recorder.claim_rows(select(T.c.event_id))
    assert ("SKIP LOCKED" in str(q.compile(store.engine))) is pg
    with store.recorder.exclusive(0x7E57) as got:
        assert got
        if pg:  # another session cannot take it meanwhile
            other = EventStore(make_engine(store.engine.url.render_as_string(
                hide_password=False)))
            with other.recorder.exclusive(0x7E57) as second:
                assert not second
            other.engine.dispose()
