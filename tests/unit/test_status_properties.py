"""Properties of the status as a whole (hypothesis over generated courses)."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import date, timedelta

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from events.envelope import RecordedEvent, canonical_json
from tests.support.cohort import RECORDED, cohort_lines, history, later, stored
from tracker.protocol import DEFAULT_PROTOCOL
from tracker.status import evaluate

LINES = cohort_lines(40, 11)
PATIENTS = sorted(LINES)
DATES = st.dates(min_value=date(2015, 1, 1), max_value=date(2021, 6, 1))


def status(events: list[RecordedEvent], at: date, known_at: object = None) -> dict[str, object]:
    patient = events[0].stream
    return evaluate(patient, events, at=at, known_at=known_at,  # type: ignore[arg-type]
                    protocol=DEFAULT_PROTOCOL).as_json()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(patient=st.sampled_from(PATIENTS), at=DATES, data=st.data())
def test_the_order_of_recording_does_not_change_the_status(patient: str, at: date,
                                                           data: st.DataObject) -> None:
    events = history(LINES[patient])
    order = data.draw(st.permutations(range(len(events))))
    shuffled = [replace(events[i], position=pos + 1) for pos, i in enumerate(order)]
    assert status(shuffled, at) == status(events, at)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(patient=st.sampled_from(PATIENTS), at=DATES, data=st.data())
def test_a_void_then_reentry_of_the_same_facts_gives_the_same_status(
        patient: str, at: date, data: st.DataObject) -> None:
    events = history(LINES[patient])
    k = data.draw(st.integers(min_value=1, max_value=len(events) - 1))  # never the enrolment
    target = events[k]
    n = len(events)
    void = stored({"type": "EntryVoided", "patient": patient, "occurred_at": "2021-06-02",
                   "data": {"target_event_id": target.event_id, "reason": "entered twice"}},
                  n + 1, event_id=str(uuid.uuid4()), recorded_at=later(RECORDED, 2))
    again_id = str(uuid.uuid4())
    again = replace(target, position=n + 2, event_id=again_id, recorded_at=later(RECORDED, 3))
    after = status([*events, void, again], at)
    before = orjson.loads(canonical_json(status(events, at)).replace(
        target.event_id.encode(), again_id.encode()))
    assert orjson.loads(canonical_json(after)) == before


@settings(max_examples=25, deadline=None)
@given(patient=st.sampled_from(PATIENTS), at=DATES, data=st.data())
def test_folding_known_at_earlier_instants_only_ever_adds(patient: str, at: date,
                                                         data: st.DataObject) -> None:
    """Everything recorded by known_at equals the log cut at that instant."""
    events = history(LINES[patient])
    k = data.draw(st.integers(min_value=1, max_value=len(events)))
    staged = [replace(e, recorded_at=later(RECORDED, 0 if i < k else 10))
              for i, e in enumerate(events)]
    cut = later(RECORDED, 5)
    assert status(staged, at, cut) | {"known_at": None} == status(events[:k], at)


def test_a_late_lab_is_absent_before_its_recorded_at_and_present_after() -> None:
    patient = next(p for p in PATIENTS
                   if any(x["type"] == "LabResultRecorded"
                          and x["data"]["analyte"] == "ionized_calcium" for x in LINES[p]))
    events = history(LINES[patient])
    low = stored({"type": "LabResultRecorded", "patient": patient,
                  "occurred_at": "2020-06-01T09:00:00+02:00",
                  "data": {"analyte": "ionized_calcium", "value": 0.8, "unit": "mmol/L"}},
                 len(events) + 1, event_id=str(uuid.uuid4()),
                 recorded_at=later(RECORDED, 30))  # entered a month late
    at = date(2020, 6, 15)
    before = status([*events, low], at, later(RECORDED, 29))
    after = status([*events, low], at, later(RECORDED, 31))
    assert low.event_id not in str(before["findings"])
    assert {"kind": "hypocalcaemia", "on": "2020-06-01", "event_id": low.event_id} \
        in after["findings"]  # type: ignore[operator]
    assert before["known_at"] != after["known_at"]
    assert (later(RECORDED, 31) - later(RECORDED, 29)) == timedelta(days=2)
