"""``import_lines(known=...)``: the caller's fresh look-ups replace the first batch's own
(the HL7 listener reads them to decide what to send), and a writer that appended or
stored a key meanwhile is still caught inside the write transaction."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from events.errors import ConcurrencyConflict
from events.store import EventStore
from tests.support.events import enrol, line, visit
from tracker.clock import FixedClock
from tracker.importing import ConcurrentImport, Known, import_lines
from tracker.protocol import DEFAULT_PROTOCOL

CLOCK = FixedClock(datetime(2020, 1, 1, tzinfo=UTC))
DATA = {"pain": True, "swelling": False, "functional_limitation": True}


def _import(store: EventStore, lines: list[bytes], known: Known) -> Any:
    return import_lines(lines, store, clock=CLOCK, protocol=DEFAULT_PROTOCOL, known=known)


def _count_lookups(store: EventStore, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []
    for name in ("stream_versions", "find_idempotency_keys"):
        real = getattr(store, name)

        def counted(*args: Any, _real: Any = real, _name: str = name, **kw: Any) -> Any:
            if kw.get("conn") is None:
                calls.append(_name)  # a look-up outside the write transaction
            return _real(*args, **kw)

        monkeypatch.setattr(store, name, counted)
    return calls


def test_known_look_ups_are_not_read_again(store: EventStore,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    store.append("P0001", 0, [enrol()])
    calls = _count_lookups(store, monkeypatch)
    report = _import(store, [line("VisitRecorded", "P0001", "2015-03-10", DATA,
                                  idempotency_key="k-1")],
                     Known(versions={"P0001": 1}, looked_up=frozenset({"k-1"})))
    assert report.written == 1 and calls == []
    # what the caller did not look up is still read
    report = _import(store, [line("VisitRecorded", "P0001", "2015-03-11", DATA,
                                  idempotency_key="k-2")], Known())
    assert report.written == 1
    assert sorted(calls) == ["find_idempotency_keys", "stream_versions"]


def test_a_known_key_found_stored_is_a_duplicate(store: EventStore) -> None:
    store.append("P0001", 0, [enrol()])
    first = [line("VisitRecorded", "P0001", "2015-03-10", DATA, idempotency_key="k-1")]
    assert _import(store, first, Known()).written == 1
    stored = store.find_idempotency_keys(["k-1"])
    report = _import(store, first, Known(versions={"P0001": 2},
                                         looked_up=frozenset({"k-1"}), keys=stored))
    assert report.written == 0 and report.duplicates == 1


def test_a_stale_known_version_is_a_conflict(store: EventStore) -> None:
    """Another writer appended after the caller read version 1: the head read in the
    transaction refuses the import, and nothing is written."""
    store.append("P0001", 0, [enrol()])
    store.append("P0001", 1, [visit()])
    with pytest.raises(ConcurrencyConflict):
        _import(store, [line("VisitRecorded", "P0001", "2015-03-10", DATA)],
                Known(versions={"P0001": 1}))
    assert store.count() == 2


def test_a_key_stored_meanwhile_is_a_concurrent_import(store: EventStore) -> None:
    """Another writer stored the key after the caller found it absent: the unique key
    refuses the import inside its transaction."""
    store.append("P0001", 0, [enrol()])
    _import(store, [line("VisitRecorded", "P0001", "2015-03-09", DATA,
                         idempotency_key="k-1")], Known())
    with pytest.raises(ConcurrentImport):
        _import(store, [line("VisitRecorded", "P0001", "2015-03-10", DATA,
                             idempotency_key="k-1")],
                Known(versions={"P0001": 2}, looked_up=frozenset({"k-1"})))
    assert store.count() == 2
