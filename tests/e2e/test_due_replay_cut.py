"""What a replay leaves out in SQL (issue 8, speed): events that occurred after D, but
never a void or correction of an earlier entry, whatever date the void carries. Through
the CLI, checked against ``status`` per patient, on SQLite and PostgreSQL."""

from __future__ import annotations

import orjson

from events.store import EventStore
from events.store.engine import make_engine
from tests.e2e.test_cli_clinical import Cli
from tests.e2e.test_due_replay import _same_as_status, run  # noqa: F401  (the fixture)


def _lab_event_id(db_url: str) -> str:
    engine = make_engine(db_url)
    try:
        events = EventStore(engine).read_stream("P0101")
        return next(e.event_id for e in events if e.type == "LabResultRecorded")
    finally:
        engine.dispose()


def test_a_void_dated_after_the_list_still_removes_an_earlier_entry(run: Cli,  # noqa: F811
                                                                    db_url: str) -> None:
    run("lab", "P0101", "urine_calcium_creatinine", "2.5", "mmol/mmol", "--at", "2015-01-10")
    before = _same_as_status(run, "2015-02-22")
    assert [(i["kind"], i["status"]) for i in before] == [("renal_ultrasound_due", "overdue")]
    void = {"target_event_id": _lab_event_id(db_url), "reason": "wrong patient"}
    run("record", "EntryVoided", "P0101", "--at", "2015-06-01", "--data",
        orjson.dumps(void).decode())
    # the void occurred after 22 Feb, but it is known now: the ratio is gone at that date
    assert _same_as_status(run, "2015-02-22") == []


def test_entries_after_the_date_are_left_out(run: Cli) -> None:  # noqa: F811
    run("lab", "P0101", "urine_calcium_creatinine", "2.5", "mmol/mmol", "--at", "2015-01-10")
    run("record", "ImagingRecorded", "P0101", "--at", "2015-03-01", "--data",
        '{"modality": "renal_ultrasound"}')
    # the ultrasound of 1 March does not exist yet on 22 February
    assert [i["status"] for i in _same_as_status(run, "2015-02-22")] == ["overdue"]
