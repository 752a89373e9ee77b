"""``cno-tracker import`` as a user runs it: every bad input is refused with the line,
field and reason, a non-zero exit, and the store unchanged."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner

from events.store import EventStore
from events.store.engine import make_engine
from events.store.writing import Writer
from tests.support.events import line, visit
from tracker.cli.main import cli
from tracker.clock import FixedClock
from tracker.errors import ImportRefused
from tracker.importing import import_lines
from tracker.protocol import DEFAULT_PROTOCOL

ENROL = line("PatientEnrolled", "P0007", "2014-01-10",
             {"birth_date": "2003-05-01", "sex": "female", "symptom_onset": "2013-11-01"},
             idempotency_key="enrol-P0007")
INFUSION = line("InfusionAdministered", "P0007", "2015-03-02T09:30:00+01:00",
                {"drug": "pamidronate", "dose_mg": 15, "weight_kg": 30.2},
                recorded_by="nurse.lopez", idempotency_key="his-inf-88121")
VISIT = line("VisitRecorded", "P0007", "2015-03-10",
             {"pain": True, "swelling": False, "functional_limitation": True})


def run(db_url: str, tmp_path: Path, *lines: bytes, args: tuple[str, ...] = ()) -> object:
    f = tmp_path / "in.jsonl"
    f.write_bytes(b"\n".join(lines) + b"\n")
    runner = CliRunner()
    return runner.invoke(cli, ["import", str(f), *args],
                         env={"CNO_TRACKER_DATABASE_URL": db_url})


def count(db_url: str) -> int:
    engine = make_engine(db_url)
    try:
        return EventStore(engine).count()
    finally:
        engine.dispose()


def test_import_writes_and_reports(db_url: str, tmp_path: Path) -> None:
    result = run(db_url, tmp_path, ENROL, INFUSION, VISIT)
    assert result.exit_code == 0, result.output
    assert "wrote 3 event(s) for 1 patient(s), skipped 0 duplicate(s)" in result.output
    assert count(db_url) == 3


def test_same_keys_again_are_skipped_as_duplicates(db_url: str, tmp_path: Path) -> None:
    assert run(db_url, tmp_path, ENROL, INFUSION).exit_code == 0
    result = run(db_url, tmp_path, ENROL, INFUSION)
    assert result.exit_code == 0, result.output
    assert "wrote 0 event(s)" in result.output and "skipped 2 duplicate(s)" in result.output
    assert count(db_url) == 2


def test_dry_run_writes_nothing(db_url: str, tmp_path: Path) -> None:
    result = run(db_url, tmp_path, ENROL, INFUSION, args=("--dry-run",))
    assert result.exit_code == 0 and "would write 2 event(s)" in result.output
    assert count(db_url) == 0


def test_stdin_is_read_with_dash(db_url: str) -> None:
    result = CliRunner().invoke(cli, ["import", "-"], input=ENROL + b"\n" + VISIT + b"\n",
                                env={"CNO_TRACKER_DATABASE_URL": db_url})
    assert result.exit_code == 0, result.output
    assert count(db_url) == 2


BAD = {
    "malformed json": (b'{"type": "VisitRecorded", "patient": ', "line", "malformed JSON"),
    "unknown type": (line("VisitDone", "P0007", "2015-03-10", {}), "type", "unknown type"),
    "unknown field": (line("VisitRecorded", "P0007", "2015-03-10", {
        "pain": True, "swelling": False, "functional_limitation": False, "mood": "ok"}),
        "data.mood", "unknown field"),
    "missing required": (line("VisitRecorded", "P0007", "2015-03-10", {
        "pain": True, "swelling": False}), "data.functional_limitation", "required"),
    "wrong type": (line("VisitRecorded", "P0007", "2015-03-10", {
        "pain": "yes", "swelling": False, "functional_limitation": False}),
        "data.pain", "boolean"),
    "name-like patient": (line("VisitRecorded", "maria.lopez", "2015-03-10", {
        "pain": True, "swelling": False, "functional_limitation": False}),
        "patient", "looks like a name"),
    "bad characters": (line("VisitRecorded", "P 0007/x", "2015-03-10", {
        "pain": True, "swelling": False, "functional_limitation": False}),
        "patient", "must match"),
    "unenrolled": (line("VisitRecorded", "P0099", "2015-03-10", {
        "pain": True, "swelling": False, "functional_limitation": False}),
        "patient", "not enrolled"),
    "future date": (line("VisitRecorded", "P0007", "2031-01-01", {
        "pain": True, "swelling": False, "functional_limitation": False}),
        "occurred_at", "in the future"),
    "naive datetime": (line("VisitRecorded", "P0007", "2015-03-10T10:00:00", {
        "pain": True, "swelling": False, "functional_limitation": False}),
        "occurred_at", "UTC offset"),
    "unknown unit": (line("LabResultRecorded", "P0007", "2015-03-10", {
        "analyte": "calcium", "value": 2.2, "unit": "mg/L"}),
        "data.unit", "use one of: mmol/L, mg/dL"),
    "implausible value": (line("LabResultRecorded", "P0007", "2015-03-10", {
        "analyte": "ionized_calcium", "value": 12, "unit": "mmol/L"}),
        "data.value", "implausible"),
    "zero dose": (line("InfusionAdministered", "P0007", "2015-03-10", {
        "drug": "pamidronate", "dose_mg": 0, "weight_kg": 30}), "data.dose_mg", "greater than 0"),
    "negative weight": (line("InfusionAdministered", "P0007", "2015-03-10", {
        "drug": "pamidronate", "dose_mg": 15, "weight_kg": -3}),
        "data.weight_kg", "greater than 0"),
    "key reused with new content": (line("InfusionAdministered", "P0007",
                                         "2015-03-02T09:30:00+01:00", {
        "drug": "pamidronate", "dose_mg": 30, "weight_kg": 30.2},
        idempotency_key="his-inf-88121"), "idempotency_key", "different content"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_is_refused_and_nothing_is_written(db_url: str, tmp_path: Path,
                                                     case: str) -> None:
    assert run(db_url, tmp_path, ENROL, INFUSION).exit_code == 0
    before = count(db_url)
    bad, field, reason = BAD[case]
    # a valid line before and after: all or nothing
    result = run(db_url, tmp_path, VISIT, bad, VISIT)
    assert result.exit_code == 2, result.output
    assert f"line 2: {field}:" in result.output, result.output
    assert reason in result.output, result.output
    assert "nothing was written" in result.output
    assert count(db_url) == before


def test_every_problem_is_reported_not_just_the_first(db_url: str, tmp_path: Path) -> None:
    result = run(db_url, tmp_path, ENROL, BAD["unknown type"][0], BAD["zero dose"][0],
                 BAD["future date"][0])
    assert result.exit_code == 2
    for n in (2, 3, 4):
        assert f"line {n}:" in result.output
    assert count(db_url) == 0


def test_void_of_another_patients_event_is_refused(db_url: str, tmp_path: Path) -> None:
    other = line("PatientEnrolled", "P0008", "2014-01-10",
                 {"birth_date": "2004-05-01", "sex": "male"})
    assert run(db_url, tmp_path, ENROL, other, line(
        "VisitRecorded", "P0008", "2015-01-01",
        {"pain": True, "swelling": False, "functional_limitation": False})).exit_code == 0
    engine = make_engine(db_url)
    target = EventStore(engine).read_stream("P0008")[1].event_id
    engine.dispose()
    before = count(db_url)
    result = run(db_url, tmp_path, line("EntryVoided", "P0007", "2015-02-01",
                                        {"target_event_id": target, "reason": "wrong chart"}))
    assert result.exit_code == 2
    assert "data.target_event_id" in result.output and "another patient" in result.output
    assert count(db_url) == before
    ok = run(db_url, tmp_path, line("EntryVoided", "P0008", "2015-02-01",
                                    {"target_event_id": target, "reason": "wrong chart"}))
    assert ok.exit_code == 0, ok.output


def test_correction_data_is_validated_against_the_target_type(db_url: str,
                                                              tmp_path: Path) -> None:
    assert run(db_url, tmp_path, ENROL, VISIT).exit_code == 0
    engine = make_engine(db_url)
    target = EventStore(engine).read_stream("P0007")[1].event_id
    engine.dispose()
    bad = run(db_url, tmp_path, line("EntryCorrected", "P0007", "2015-03-11", {
        "target_event_id": target, "reason": "typo", "data": {"pain": "no"}}))
    assert bad.exit_code == 2 and "data.data.pain" in bad.output
    good = run(db_url, tmp_path, line("EntryCorrected", "P0007", "2015-03-11", {
        "target_event_id": target, "reason": "typo",
        "data": {"pain": False, "swelling": False, "functional_limitation": False}}))
    assert good.exit_code == 0, good.output


class _RacingStore(EventStore):
    """A real store; another writer appends to the stream just before ours commits."""

    def __init__(self, url: str) -> None:
        super().__init__(make_engine(url))
        self.url = url

    @contextmanager
    def transaction(self) -> Iterator[Writer]:
        rival = EventStore(make_engine(self.url))
        rival.append("P0007", rival.stream_version("P0007"), [visit()])
        rival.engine.dispose()
        with super().transaction() as w:
            yield w


def test_a_concurrent_append_at_the_same_version_refuses_the_whole_import(db_url: str,
                                                                          tmp_path: Path) -> None:
    assert run(db_url, tmp_path, ENROL).exit_code == 0
    store = _RacingStore(db_url)
    from events.errors import ConcurrencyConflict
    with pytest.raises(ConcurrencyConflict):
        import_lines([VISIT, VISIT], store, clock=FixedClock(datetime(2020, 1, 1, tzinfo=UTC)),
                     protocol=DEFAULT_PROTOCOL)
    assert count(db_url) == 2  # the enrolment and the rival's visit; none of ours
    store.engine.dispose()


def test_import_refused_lists_problems_programmatically(db_url: str) -> None:
    engine = make_engine(db_url)
    with pytest.raises(ImportRefused) as info:
        import_lines([orjson.dumps({"type": "VisitRecorded"})], EventStore(engine),
                     clock=FixedClock(), protocol=DEFAULT_PROTOCOL)
    assert {p.field for p in info.value.problems} >= {"patient", "occurred_at", "data"}
    engine.dispose()
