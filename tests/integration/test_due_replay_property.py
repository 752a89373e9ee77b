"""The worklist of any date D as known at any instant K is the union of the per-patient
statuses (issue 8), for generated cohorts with late entries, voids and corrections, on
SQLite and PostgreSQL."""

from __future__ import annotations

import itertools
import shutil
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from events.envelope import NewEvent, RecordedEvent
from events.lines import decode_line
from events.store import EventStore
from events.store.engine import make_engine
from events.vocabulary import EVENT_TYPES
from tests.conftest import create_pg_database, drop_pg_database
from tests.support.cohort import cohort_lines
from tests.support.worklist_oracle import as_lines, expected_alerts, expected_lines, fired
from tracker import replay as replay_module
from tracker.clock import FixedClock
from tracker.importing import when_to_instant
from tracker.protocol import DEFAULT_PROTOCOL
from tracker.readmodel import StatusProjector, due_before
from tracker.replay import Question, replay
from tracker.status import evaluate
from tracker.worklist import worklist

POOL = cohort_lines(24, 31)
SOURCES = sorted(POOL)
ZONE = DEFAULT_PROTOCOL.zone
LOOKBACK = DEFAULT_PROTOCOL.alert_lookback_days
_names = itertools.count(1)

# one patient: which generated course, which entries come late (and by how many days),
# which entries are voided or corrected (and how long after they were recorded)
PATIENT = st.fixed_dictionaries({
    "source": st.sampled_from(SOURCES),
    "late": st.dictionaries(st.integers(1, 80), st.integers(1, 500), max_size=6),
    "fixes": st.dictionaries(st.integers(1, 80),
                             st.tuples(st.sampled_from(["void", "correct"]),
                                       st.integers(0, 300)), max_size=4),
})
COHORT = st.lists(PATIENT, min_size=1, max_size=3)
DATES = st.dates(min_value=date(2015, 1, 1), max_value=date(2021, 3, 1))


def _new(line: dict[str, Any], recorded_at: datetime) -> NewEvent:
    m = decode_line(orjson.dumps(line))
    occurred_at, occurred_on = when_to_instant(m.occurred_at, DEFAULT_PROTOCOL)
    return NewEvent(event_id=str(uuid.uuid4()), type=m.type, data=m.data,
                    occurred_at=occurred_at, occurred_on=occurred_on,
                    recorded_at=max(recorded_at, occurred_at), recorded_by="test")


#: analyte -> (a value that triggers something, one that does not), canonical units
ACROSS = {"urine_calcium_creatinine": (2.5, 1.0), "calcium": (2.0, 2.4)}


def _corrected(target: NewEvent) -> dict[str, Any] | None:
    """New data for a visit (pain flipped) or a urine Ca/Cr or calcium result (a value on
    the other side of its threshold); other entries are voided instead."""
    data = orjson.loads(target.data.model_dump_json())
    if target.type == "VisitRecorded":
        return {**data, "pain": not data["pain"]}
    if target.type == "LabResultRecorded" and data["analyte"] in ACROSS:
        high, normal = ACROSS[data["analyte"]]
        value = normal if data["canonical_value"] == high else high
        return {**data, "unit": data["canonical_unit"], "value": value,
                "canonical_value": value}
    return None


def _fix(target: NewEvent, kind: str, days: int) -> NewEvent:
    when = target.recorded_at + timedelta(days=days, minutes=1)
    replacement = _corrected(target) if kind == "correct" else None
    if replacement is None:
        data = EVENT_TYPES["EntryVoided"].model_validate(
            {"target_event_id": target.event_id, "reason": "entered in error"})
        etype = "EntryVoided"
    else:
        data = EVENT_TYPES["EntryCorrected"].model_validate(
            {"target_event_id": target.event_id, "reason": "wrong value",
             "data": replacement})
        etype = "EntryCorrected"
    return NewEvent(event_id=str(uuid.uuid4()), type=etype, data=data,
                    occurred_at=target.occurred_at, occurred_on=target.occurred_on,
                    recorded_at=when, recorded_by="test")


def course_of(spec: dict[str, Any]) -> tuple[str, list[NewEvent]]:
    """One generated course under a fresh reference, entered mostly on the day, some
    entries late, some voided or corrected later; in the order recorded."""
    patient = f"R{next(_names)}-0001"
    lines = [{**line, "patient": patient, "idempotency_key": None}
             for line in POOL[spec["source"]]]
    events = []
    for i, line in enumerate(lines):
        when = when_to_instant(decode_line(orjson.dumps(line)).occurred_at,
                               DEFAULT_PROTOCOL)[0] + timedelta(hours=2)
        events.append(_new(line, when + timedelta(days=spec["late"].get(i, 0) if i else 0)))
    enrolment, rest = events[0], events[1:]
    fixes = [_fix(rest[i - 1], kind, days) for i, (kind, days) in spec["fixes"].items()
             if i - 1 < len(rest)]
    ordered = [enrolment, *sorted([*rest, *fixes], key=lambda e: e.recorded_at)]
    for e in ordered[1:]:  # nothing is recorded before the patient is enrolled
        assert e.recorded_at >= enrolment.recorded_at
    return patient, ordered


def write_patient(store: EventStore, spec: dict[str, Any]) -> str:
    patient, events = course_of(spec)
    store.append(patient, 0, events)
    return patient


def union_of_statuses(store: EventStore, at: date, known_at: datetime | None, soon: int
                      ) -> tuple[list[Any], list[Any]]:
    lines: list[Any] = []
    alerts: list[Any] = []
    for patient in store.streams():
        status = evaluate(patient, store.read_stream(patient), at=at, known_at=known_at,
                          protocol=DEFAULT_PROTOCOL).as_json()
        status = orjson.loads(orjson.dumps(status))
        lines += expected_lines(status, at, soon, DEFAULT_PROTOCOL)
        alerts += expected_alerts(status)
    return sorted(lines), sorted(alerts)


def recorded_range(store: EventStore) -> tuple[datetime, datetime]:
    events: list[RecordedEvent] = [e for s in store.streams() for e in store.read_stream(s)]
    return min(e.recorded_at for e in events), max(e.recorded_at for e in events)


Fresh = Callable[[], AbstractContextManager[EventStore]]


@pytest.fixture
def fresh(db_url: str, tmp_path: Path, request: pytest.FixtureRequest) -> Fresh:
    """A new empty store of the same kind as ``db_url`` for each hypothesis example, so
    that every example (and its shrinking) stands alone."""
    names = itertools.count(1)

    @contextmanager
    def make() -> Iterator[EventStore]:
        if db_url.startswith("sqlite"):
            target = tmp_path / f"example-{next(names)}.db"
            shutil.copy(request.getfixturevalue("sqlite_template"), target)
            url = f"sqlite:///{target}"
        else:
            url = create_pg_database(template=request.getfixturevalue("pg_template"))
        engine = make_engine(url)
        try:
            yield EventStore(engine)
        finally:
            engine.dispose()
            if not db_url.startswith("sqlite"):
                drop_pg_database(url)
            else:
                target.unlink()
    return make


@pytest.mark.slow
@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(cohort=COHORT, at=DATES, soon=st.integers(0, 21), data=st.data())
def test_a_replayed_worklist_is_the_union_of_the_statuses(
        fresh: Fresh, cohort: list[dict[str, Any]], at: date, soon: int,
        data: st.DataObject) -> None:
    with fresh() as store:
        _check_replay(store, cohort, at, soon, data)


def _check_replay(store: EventStore, cohort: list[dict[str, Any]], at: date, soon: int,
                  data: st.DataObject) -> None:
    for spec in cohort:
        write_patient(store, spec)
    first, last = recorded_range(store)
    known_at = data.draw(st.one_of(st.none(), st.datetimes(
        min_value=first.replace(tzinfo=None) - timedelta(days=30),
        max_value=last.replace(tzinfo=None) + timedelta(days=1), timezones=st.just(UTC))))
    done = replay(store, DEFAULT_PROTOCOL, Question(at, known_at, soon, LOOKBACK))
    listing = worklist(done.rows, at, soon_days=soon, lookback_days=LOOKBACK)
    lines, alerts = union_of_statuses(store, at, known_at, soon)
    assert as_lines(listing) == lines
    assert fired(listing) == alerts


@pytest.mark.slow
@settings(max_examples=12, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(cohort=COHORT, start=DATES, days=st.integers(0, 400), soon=st.integers(0, 21))
def test_todays_worklist_from_the_read_model_is_the_union_of_the_statuses(
        fresh: Fresh, cohort: list[dict[str, Any]], start: date, days: int,
        soon: int) -> None:
    """The present list: the read model caught up on ``start`` and again on ``start +
    days`` (what was recorded in between is folded then, the rest only re-checked when
    stale), then read as ``due`` reads it."""
    with fresh() as store:
        _check_read_model(store, cohort, start, days, soon)


def _check_read_model(store: EventStore, cohort: list[dict[str, Any]], start: date,
                      days: int, soon: int) -> None:
    today = start + timedelta(days=days)
    then = datetime.combine(start, time(8), ZONE).astimezone(UTC)
    now = datetime.combine(today, time(8), ZONE).astimezone(UTC)
    courses = [course_of(spec) for spec in cohort]
    # what was recorded by ``start`` is there at the first catch-up; what was recorded
    # between then and today arrives before the second; nothing is recorded after now
    for patient, events in courses:
        early = [e for e in events if e.recorded_at <= then]
        if early:
            store.append(patient, 0, early)
    clock = FixedClock(then)
    projector = StatusProjector(store, DEFAULT_PROTOCOL, clock)
    projector.catch_up()
    for patient, events in courses:
        done = sum(1 for e in events if e.recorded_at <= then)
        later = [e for e in events if then < e.recorded_at <= now]
        if later:
            store.append(patient, done, later)
    clock.instant = now
    projector.catch_up()
    with store.engine.connect() as conn:
        rows = due_before(conn, today + timedelta(days=soon), with_causes=False,
                          news_since=today - timedelta(days=LOOKBACK))
    listing = worklist(rows, today, soon_days=soon, lookback_days=LOOKBACK)
    lines, alerts = union_of_statuses(store, today, None, soon)
    assert as_lines(listing) == lines
    assert fired(listing) == alerts


@pytest.mark.slow
def test_worker_processes_replay_the_same_list(pg_url: str,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    store = EventStore(make_engine(pg_url))
    for source in SOURCES[:8]:
        write_patient(store, {"source": source, "late": {3: 40, 5: 200},
                              "fixes": {4: ("void", 10), 6: ("correct", 3)}})
    question = Question(date(2018, 6, 1), datetime(2019, 1, 1, tzinfo=UTC), 7, LOOKBACK)
    serial = replay(store, DEFAULT_PROTOCOL, question)
    monkeypatch.setattr(replay_module, "PARALLEL_MIN", 1)
    monkeypatch.setattr(replay_module, "CHUNK", 3)
    parallel = replay(store, DEFAULT_PROTOCOL, question, workers=2)
    assert parallel.processes == 2 and serial.processes == 1
    key = lambda r: r["key"]  # noqa: E731
    assert sorted(parallel.rows, key=key) == sorted(serial.rows, key=key)
    assert serial.rows  # the cohort has open items at that date
    store.engine.dispose()
