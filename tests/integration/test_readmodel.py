"""The read model: following the log equals rebuilding it, and equals per-patient folds."""

from __future__ import annotations

from datetime import UTC, date, datetime

import orjson
import pytest

from events.store import EventStore
from tracker.clock import FixedClock
from tracker.importing import import_lines
from tracker.protocol import DEFAULT_PROTOCOL
from tracker.readmodel import StatusProjector, all_rows, due_before, load_status
from tracker.status import evaluate
from tracker.synthetic import generate_cohort

NOW = FixedClock(datetime(2021, 1, 10, 9, 0, tzinfo=UTC))


def _import(store: EventStore, patients: int, seed: int) -> int:
    lines = [orjson.dumps(x) for x in generate_cohort(patients, seed, date(2020, 12, 31),
                                                      start_year=2016)]
    return import_lines(lines, store, clock=NOW, protocol=DEFAULT_PROTOCOL).written


@pytest.mark.slow
def test_following_equals_rebuilding_equals_folding_for_500_patients(store: EventStore) -> None:
    written = _import(store, 500, 5)
    projector = StatusProjector(store, DEFAULT_PROTOCOL, NOW)
    report = projector.catch_up(batch_size=997)  # batches cut across patients
    assert report.events == written
    with store.engine.connect() as conn:
        followed = all_rows(conn)
    rebuilt_report = projector.rebuild()
    assert rebuilt_report.patients == 500
    with store.engine.connect() as conn:
        rebuilt = all_rows(conn)
        assert followed == rebuilt
        assert len(followed[0]) == 500 and len(followed[1]) > 0
        for patient in ("G5-0001", "G5-0250", "G5-0500"):
            folded = evaluate(patient, store.read_stream(patient), at=date(2021, 1, 10),
                              known_at=None, protocol=DEFAULT_PROTOCOL).as_json()
            assert load_status(conn, patient) == orjson.loads(orjson.dumps(folded))
    assert projector.catch_up().events == 0  # nothing new: nothing folded
    parallel = projector.rebuild(workers=2)  # worker processes on PostgreSQL
    assert parallel.patients == 500
    with store.engine.connect() as conn:
        assert all_rows(conn) == followed
    # a catch-up touching hundreds of patients evaluates them in worker processes
    # (PostgreSQL) and writes the rows with its checkpoint: the same rows again
    fresh = StatusProjector(store, DEFAULT_PROTOCOL, NOW, name="from-zero", workers=2)
    try:
        assert fresh.catch_up(batch_size=20_000).events == written
    finally:
        fresh.close()
    with store.engine.connect() as conn:
        assert all_rows(conn) == followed


def test_new_events_refresh_only_their_patient_and_the_schedule(store: EventStore) -> None:
    _import(store, 5, 9)
    projector = StatusProjector(store, DEFAULT_PROTOCOL, NOW)
    projector.catch_up()
    visit = orjson.dumps({"type": "VisitRecorded", "patient": "G9-0002",
                          "occurred_at": "2021-01-09",
                          "data": {"pain": True, "swelling": True,
                                   "functional_limitation": False}})
    import_lines([visit], store, clock=NOW, protocol=DEFAULT_PROTOCOL)
    report = projector.catch_up()
    assert (report.events, report.patients) == (1, 1)
    with store.engine.connect() as conn:
        status = load_status(conn, "G9-0002")
        assert status is not None and status["disease"]["state"] == "active"
        assert status["disease"]["last_activity"] == "2021-01-09"
        rows = due_before(conn, date(2021, 1, 10))
    assert all(r["fires_on"] <= date(2021, 1, 10) for r in rows)
    assert [r["fires_on"] for r in rows] == sorted(r["fires_on"] for r in rows)


def test_time_alone_moves_a_patient_into_remission(store: EventStore) -> None:
    lines = [
        {"type": "PatientEnrolled", "patient": "P0100", "occurred_at": "2020-01-02",
         "data": {"birth_date": "2010-01-01", "sex": "female", "symptom_onset": "2019-12-01"}},
        {"type": "VisitRecorded", "patient": "P0100", "occurred_at": "2020-03-31",
         "data": {"pain": True, "swelling": False, "functional_limitation": False}},
        {"type": "VisitRecorded", "patient": "P0100", "occurred_at": "2020-05-01",
         "data": {"pain": False, "swelling": False, "functional_limitation": False}},
    ]
    clock = FixedClock(datetime(2020, 9, 30, 12, tzinfo=UTC))
    import_lines([orjson.dumps(x) for x in lines], store, clock=clock, protocol=DEFAULT_PROTOCOL)
    projector = StatusProjector(store, DEFAULT_PROTOCOL, clock)
    first = projector.catch_up()
    assert (first.events, first.patients) == (3, 1), first
    with store.engine.connect() as conn:
        assert load_status(conn, "P0100")["disease"]["state"] == "inactive"  # type: ignore[index]
    # 31 Mar + 6 months = 30 Sep; remission from 1 Oct, with no new event
    clock.instant = datetime(2020, 10, 1, 12, tzinfo=UTC)
    report = projector.catch_up()
    assert report.events == 0 and report.rechecked == 1
    with store.engine.connect() as conn:
        disease = load_status(conn, "P0100")["disease"]  # type: ignore[index]
    assert (disease["state"], disease["remission_since"]) == ("remission", "2020-10-01")


def test_a_rebuild_on_postgresql_leaves_the_planner_the_read_models_size(
        store: EventStore) -> None:
    """Before a rebuild the planner's figures for the read model are from when it was
    empty (or never taken); a catch-up's per-patient DELETE then ran as a sequential scan
    (half of a 6-million-event rebuild). The rebuild ends with ANALYZE of both tables."""
    if store.engine.dialect.name != "postgresql":
        pytest.skip("the planner statistics in question are PostgreSQL's")
    from sqlalchemy import func, select, text

    from tracker.readmodel import due_items, patient_status

    _import(store, 20, 13)
    projector = StatusProjector(store, DEFAULT_PROTOCOL, NOW)
    assert projector.rebuild().patients == 20
    with store.engine.connect() as conn:
        for table in (patient_status, due_items):
            counted = conn.execute(select(func.count()).select_from(table)).scalar_one()
            estimated = conn.execute(text("SELECT reltuples FROM pg_class WHERE relname = :t"),
                                     {"t": table.name}).scalar_one()
            assert counted > 0 and estimated == counted, table.name
    assert projector.catch_up().events == 0  # and the rows it wrote are whole
    with store.engine.connect() as conn:
        rebuilt = all_rows(conn)
    assert projector.rebuild(workers=2).patients == 20  # insert-only chunks, twice over
    with store.engine.connect() as conn:
        assert all_rows(conn) == rebuilt
