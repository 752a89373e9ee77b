"""What the line decoder refuses at the door (issue 9 items 1 and 4): every pattern
matches the whole value, no control characters in stored columns, no duplicate keys,
clinical dates inside the calendar, a birth on or before enrolment."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest

from events.errors import InvalidEvent
from events.lines import decode_line, duplicate_key

ENROL: dict[str, Any] = {"type": "PatientEnrolled", "patient": "P0001",
                         "occurred_at": "2014-01-10",
                         "data": {"birth_date": "2003-05-01", "sex": "female"}}
LAB: dict[str, Any] = {"type": "LabResultRecorded", "patient": "P0001",
                       "occurred_at": "2015-03-04T08:10:00+01:00",
                       "data": {"analyte": "calcium", "value": 2.3, "unit": "mmol/L",
                                "loinc": "17861-6"}}
CORRECTION: dict[str, Any] = {"type": "EntryVoided", "patient": "P0001",
                              "occurred_at": "2015-03-04",
                              "data": {"target_event_id": "2b1c7f4e-8d0a-4f6e-9c55-0d6c1f7a3b21",
                                       "reason": "wrong patient"}}
MEDICATION: dict[str, Any] = {"type": "MedicationStarted", "patient": "P0001",
                              "occurred_at": "2015-03-01",
                              "data": {"course_id": "c3", "drug": "pamidronate",
                                       "regimen": "quarterly"}}


def with_(base: dict[str, Any], path: str, value: Any) -> bytes:
    doc = json.loads(json.dumps(base))
    *parents, last = path.split(".")
    target = doc
    for p in parents:
        target = target[p]
    target[last] = value
    return orjson.dumps(doc)


def problems(raw: bytes | str) -> list[tuple[str, str]]:
    with pytest.raises(InvalidEvent) as info:
        decode_line(raw, 1)
    return [(p.field, p.reason) for p in info.value.problems]


def fields(raw: bytes | str) -> list[str]:
    return [f for f, _ in problems(raw)]


# ------------------------------------------------------------ item 1: whole values
@pytest.mark.parametrize("ref", ["P0001\n", "P0001\r\n", " P0001", "P0001 ", "P00\x0001",
                                 "P0001\t", "\nP0001"])
def test_a_patient_reference_with_surrounding_or_control_characters_is_refused(ref: str) -> None:
    assert fields(with_(ENROL, "patient", ref)) == ["patient"]


def test_the_same_reference_without_them_is_accepted() -> None:
    assert decode_line(orjson.dumps(ENROL), 1).patient == "P0001"


@pytest.mark.parametrize("loinc", ["17861-6\n", "17861-6 ", "x17861-6", "17861-66"])
def test_a_loinc_code_must_be_the_whole_value(loinc: str) -> None:
    assert fields(with_(LAB, "data.loinc", loinc)) == ["data.loinc"]


def test_a_loinc_code_alone_is_accepted() -> None:
    assert decode_line(orjson.dumps(LAB), 1).data.loinc == "17861-6"


@pytest.mark.parametrize("course", ["c3\n", "c 3", "c3\x00", " c3"])
def test_an_identifier_must_be_the_whole_value(course: str) -> None:
    assert fields(with_(MEDICATION, "data.course_id", course)) == ["data.course_id"]


def test_an_identifier_alone_is_accepted() -> None:
    assert decode_line(orjson.dumps(MEDICATION), 1).data.course_id == "c3"


@pytest.mark.parametrize("field", ["recorded_by", "idempotency_key"])
@pytest.mark.parametrize("value", ["nurse\x00", "nurse\n", "\x1bnurse", "nurse\x7f",
                                   " nurse", "nurse "])
def test_who_and_the_key_refuse_control_characters_and_surrounding_spaces(
        field: str, value: str) -> None:
    assert fields(with_(ENROL, field, value)) == [field]


@pytest.mark.parametrize("field", ["recorded_by", "idempotency_key"])
def test_who_and_the_key_accept_inner_spaces(field: str) -> None:
    assert getattr(decode_line(with_(ENROL, field, "dr ruiz 7"), 1), field) == "dr ruiz 7"


def test_free_text_refuses_nul_but_keeps_line_breaks() -> None:
    assert fields(with_(CORRECTION, "data.reason", "wrong\x00patient")) == ["data.reason"]
    assert decode_line(with_(CORRECTION, "data.reason", "wrong\npatient"), 1).data.reason \
        == "wrong\npatient"


# ------------------------------------------------------------ item 4: duplicate keys
@pytest.mark.parametrize("raw", [
    b'{"type":"PatientEnrolled","patient":"P0001","patient":"P0002","occurred_at":"2014-01-10",'
    b'"data":{"birth_date":"2003-05-01","sex":"female"}}',
    b'{"type": "PatientEnrolled", "patient": "P0001", "occurred_at": "2014-01-10", '
    b'"data": {"birth_date": "2003-05-01", "sex": "female", "sex": "male"}}',
    b'{"type":"PatientEnrolled","patient":"P0001","occurred_at":"2014-01-10",'
    b'"data":{"birth_date":"2003-05-01","sex":"female","birth_d\\u0061te":"2003-05-02"}}',
])
def test_a_key_twice_in_one_object_is_refused(raw: bytes) -> None:
    [(field, reason)] = problems(raw)
    assert field == "line" and "duplicate key" in reason


@pytest.mark.parametrize(("raw", "key"), [
    (b'{"a": 1, "a" :2}', "a"), (b'{"a":1,"a"\t:2}', "a"), (b'{"a":1, "a"  :  2}', "a"),
    (b'{"a": "x:y", "b": {"c": 1, "c": 2}}', "c"), (b'{"a":"x","a":"y:"}', "a"),
    (b'{"k\\"":1,"k\\"":2}', 'k"'), (b'{"a":1,"\\u0061":2}', "a"),
    (b'{"n": 123456789012345678901234567890, "n": 1}', "n"),
])
def test_every_way_of_writing_a_duplicate_is_found(raw: bytes, key: str) -> None:
    assert duplicate_key(raw) == key


def test_compact_and_spaced_lines_without_duplicates_pass_both_paths() -> None:
    assert duplicate_key(orjson.dumps(ENROL)) is None
    assert duplicate_key(json.dumps(ENROL).encode()) is None
    assert duplicate_key(b'{"a": 1, "b": {"a": 2}}') is None  # the same key in two objects
    assert duplicate_key(b'{"a": "x\\"y:", "b": 1}') is None  # escapes: the exact path
    assert duplicate_key(b'{"a":\t1,\n"b"  :  "c : d"}') is None


def test_malformed_json_is_still_named_as_such() -> None:
    [(field, reason)] = problems(b'{"type": "PatientEnrolled",')
    assert field == "line" and "malformed JSON" in reason


# ------------------------------------------------------------ item 4: the calendar
@pytest.mark.parametrize("when", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00",
                                  "0001-01-01", "1899-12-31", "1899-12-31T23:59:59+00:00",
                                  "2200-01-01"])
def test_an_occurrence_outside_the_calendar_is_refused(when: str) -> None:
    assert fields(with_(ENROL, "occurred_at", when)) == ["occurred_at"]


@pytest.mark.parametrize("when", ["1900-01-01", "1900-01-01T00:00:00+00:00", "2199-12-31"])
def test_the_calendar_bounds_themselves_are_accepted(when: str) -> None:
    enrol = {**ENROL, "data": {"birth_date": "1900-01-01", "sex": "female"}}
    decode_line(with_(enrol, "occurred_at", when), 1)


@pytest.mark.parametrize("field", ["birth_date", "symptom_onset", "first_consultation"])
def test_a_clinical_date_before_1900_is_refused(field: str) -> None:
    data = {"birth_date": "1899-12-31", "sex": "female", field: "1899-12-31"}
    assert f"data.{field}" in fields(with_(ENROL, "data", data))


def test_a_diagnosis_date_before_1900_is_refused() -> None:
    line = {"type": "DiagnosisAssessed", "patient": "P0001", "occurred_at": "2014-01-10",
            "data": {"diagnosed_on": "0001-01-01"}}
    assert fields(orjson.dumps(line)) == ["data.diagnosed_on"]


# ------------------------------------------------------------ item 4: born before enrolled
@pytest.mark.parametrize(("born", "refused"), [
    ("2014-01-09", False), ("2014-01-10", False), ("2014-01-11", True)])
def test_a_birth_after_the_enrolment_day_is_refused(born: str, refused: bool) -> None:
    raw = with_(ENROL, "data.birth_date", born)
    if refused:
        [(field, reason)] = problems(raw)
        assert field == "data.birth_date" and "2014-01-10" in reason
    else:
        assert str(decode_line(raw, 1).data.birth_date) == born


def test_the_enrolment_day_of_a_datetime_is_its_own_local_day() -> None:
    late = {**ENROL, "occurred_at": "2014-01-10T23:30:00-05:00"}  # 11 Jan in UTC
    assert decode_line(with_(late, "data.birth_date", "2014-01-10"), 1)
    assert fields(with_(late, "data.birth_date", "2014-01-11")) == ["data.birth_date"]


@pytest.mark.parametrize("when", ["2015-13-01", "2015-03-04T08:10:00", "1899-12-31"])
def test_a_refused_instant_is_refused_every_time(when: str) -> None:
    """``occurred_at`` texts are parsed through a cache: refusals are never cached."""
    for _ in range(2):
        with pytest.raises(InvalidEvent) as exc:
            decode_line(orjson.dumps({**LAB, "occurred_at": when}))
        assert [p.field for p in exc.value.problems] == ["occurred_at"]


def test_a_cached_instant_is_the_same_value() -> None:
    first = decode_line(orjson.dumps(LAB)).occurred_at
    again = decode_line(orjson.dumps(LAB)).occurred_at
    assert first == again and first.utcoffset() is not None


@pytest.mark.parametrize("patient, reason", [
    ("Garcia", "looks like a name"), ("P\u0660001", "must match"), ("_P1", "must match"),
    ("P" + "1" * 64, "must match")])
def test_patient_fast_path_refuses_what_the_checks_refuse(patient: str, reason: str) -> None:
    with pytest.raises(InvalidEvent) as exc:
        decode_line(orjson.dumps({**LAB, "patient": patient}))
    assert exc.value.problems[0].field == "patient"
    assert reason in exc.value.problems[0].reason


@pytest.mark.parametrize("key, reason", [(" k1", "whitespace"), ("k\x001", "control"),
                                         ("k1\n", "control")])
def test_key_checks_keep_their_order(key: str, reason: str) -> None:
    with pytest.raises(InvalidEvent) as exc:
        decode_line(orjson.dumps({**LAB, "idempotency_key": key}))
    assert reason in exc.value.problems[0].reason
