"""Voids and corrections stay coherent across imports and within one file (issue 9 item
4): each refusal is exit 2, names the target's current state, and writes nothing."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from events.store import EventStore
from events.store.engine import make_engine
from tests.support.events import line
from tracker.cli.main import cli

ENROL = line("PatientEnrolled", "P0007", "2014-01-10",
             {"birth_date": "2003-05-01", "sex": "female"}, idempotency_key="enrol-P0007")
OTHER = line("PatientEnrolled", "P0008", "2014-01-10",
             {"birth_date": "2004-05-01", "sex": "male"}, idempotency_key="enrol-P0008")
VISIT = {"pain": True, "swelling": False, "functional_limitation": True}


def run(db_url: str, tmp_path: Path, *lines: bytes) -> Result:
    f = tmp_path / "in.jsonl"
    f.write_bytes(b"\n".join(lines) + b"\n")
    return CliRunner().invoke(cli, ["import", str(f)], env={"CNO_TRACKER_DATABASE_URL": db_url})


def events(db_url: str, stream: str = "P0007") -> list[str]:
    engine = make_engine(db_url)
    try:
        return [e.event_id for e in EventStore(engine).read_stream(stream)]
    finally:
        engine.dispose()


def void(target: str, **extra: str) -> bytes:
    return line("EntryVoided", "P0007", "2015-04-01",
                {"target_event_id": target, "reason": "entered in error"}, **extra)


def correct(target: str, data: dict[str, object] | None = None, patient: str = "P0007",
            **extra: str) -> bytes:
    return line("EntryCorrected", patient, "2015-04-01",
                {"target_event_id": target, "reason": "typo",
                 "data": data or {**VISIT, "pain": False}}, **extra)


@pytest.fixture
def visit_id(db_url: str, tmp_path: Path) -> str:
    ok = run(db_url, tmp_path, ENROL, OTHER,
             line("VisitRecorded", "P0007", "2015-03-10", VISIT, recorded_by="nurse.lopez"))
    assert ok.exit_code == 0, ok.output
    return events(db_url)[1]


def refused(result: Result, db_url: str, before: int, *needles: str) -> None:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    for needle in needles:
        assert needle in result.output, result.output
    assert "nothing was written" in result.output
    assert len(events(db_url)) == before


def test_a_second_void_names_the_first(db_url: str, tmp_path: Path, visit_id: str) -> None:
    first = run(db_url, tmp_path, void(visit_id, recorded_by="dr.ruiz"))
    assert first.exit_code == 0, first.output
    void_id = events(db_url)[-1]
    again = run(db_url, tmp_path, void(visit_id))
    refused(again, db_url, 3, f"line 1: data.target_event_id: event {visit_id} was already "
            f"voided by dr.ruiz on ", f"(event {void_id}): it cannot be voided again")


def test_a_voided_event_cannot_be_corrected(db_url: str, tmp_path: Path, visit_id: str) -> None:
    assert run(db_url, tmp_path, void(visit_id)).exit_code == 0
    result = run(db_url, tmp_path, correct(visit_id))
    refused(result, db_url, 3, "was already voided by import on ",
            "a voided event cannot be corrected")


def test_void_then_correct_in_one_file_names_the_line(db_url: str, tmp_path: Path,
                                                      visit_id: str) -> None:
    result = run(db_url, tmp_path, void(visit_id), correct(visit_id))
    refused(result, db_url, 2, f"line 2: data.target_event_id: event {visit_id} is voided on "
            "line 1 of this file: a voided event cannot be corrected")
    twice = run(db_url, tmp_path, void(visit_id), void(visit_id))
    refused(twice, db_url, 2, "is voided on line 1 of this file: it cannot be voided again")


def test_two_corrections_of_one_event_in_one_file(db_url: str, tmp_path: Path,
                                                  visit_id: str) -> None:
    result = run(db_url, tmp_path, correct(visit_id),
                 correct(visit_id, {**VISIT, "swelling": True}))
    refused(result, db_url, 2, f"line 2: data.target_event_id: event {visit_id} is already "
            "corrected on line 1 of this file")


def test_corrections_in_separate_imports_are_accepted(db_url: str, tmp_path: Path,
                                                      visit_id: str) -> None:
    assert run(db_url, tmp_path, correct(visit_id)).exit_code == 0
    later = run(db_url, tmp_path, correct(visit_id, {**VISIT, "swelling": True}))
    assert later.exit_code == 0, later.output
    assert len(events(db_url)) == 4


def test_a_correction_cannot_change_the_type(db_url: str, tmp_path: Path,
                                             visit_id: str) -> None:
    lab = {"type": "LabResultRecorded", "analyte": "crp", "value": 3, "unit": "mg/L"}
    result = run(db_url, tmp_path, correct(visit_id, lab))
    refused(result, db_url, 2, f"line 1: data.data.type: event {visit_id} is a VisitRecorded "
            "of this patient: a correction replaces its data and cannot change its type")
    # another type's data without a "type" key: refused naming what the target is
    bare = run(db_url, tmp_path, correct(visit_id, {"analyte": "crp", "value": 3, "unit": "mg/L"}))
    refused(bare, db_url, 2, "line 1: data.data.", f"(event {visit_id} is a VisitRecorded)")


def test_a_correction_cannot_change_the_patient(db_url: str, tmp_path: Path,
                                                visit_id: str) -> None:
    moved = run(db_url, tmp_path, correct(visit_id, patient="P0008"))
    refused(moved, db_url, 2, f"event {visit_id} belongs to another patient: a correction "
            "cannot move an event to another patient")
    keyed = run(db_url, tmp_path, correct(visit_id, {**VISIT, "patient": "P0008"}))
    refused(keyed, db_url, 2, "data.data.patient:", "cannot change its patient")


def test_a_reimported_void_is_a_duplicate_not_a_second_void(db_url: str, tmp_path: Path,
                                                            visit_id: str) -> None:
    keyed = void(visit_id, idempotency_key="void-1")
    assert run(db_url, tmp_path, keyed).exit_code == 0
    again = run(db_url, tmp_path, keyed)
    assert again.exit_code == 0, again.output
    assert "wrote 0 event(s)" in again.output and "skipped 1 duplicate(s)" in again.output
