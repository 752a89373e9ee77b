"""``due --at D --known-at K`` equals ``status --at D --known-at K`` per patient: the three
hand-worked cases of issue 8, through the CLI on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

from tests.e2e.test_cli_clinical import Cli
from tests.support.worklist_oracle import as_lines, expected_alerts, expected_lines, fired
from tracker.protocol import DEFAULT_PROTOCOL


@pytest.fixture
def run(db_url: str) -> Cli:
    c = Cli(db_url)
    c("record", "PatientEnrolled", "P0101", "--at", "2014-06-01", "--data",
      '{"birth_date": "2005-02-01", "sex": "male", "symptom_onset": "2014-05-01"}')
    return c


def _same_as_status(run: Cli, at: str, *extra: str, soon: int = 7) -> list[dict[str, Any]]:
    """The worklist, checked line by line against the patient's status."""
    listing: list[dict[str, Any]] = run.json("due", "--at", at, "--soon", str(soon), *extra)
    status = run.json("status", "P0101", "--at", at, *extra)
    assert as_lines(listing) == expected_lines(status, date.fromisoformat(at), soon,
                                               DEFAULT_PROTOCOL)
    assert fired(listing) == expected_alerts(status)
    return listing


def _ultrasound_after_high_ratio(run: Cli) -> None:
    run("lab", "P0101", "urine_calcium_creatinine", "2.5", "mmol/mmol", "--at", "2015-01-10")
    run("record", "ImagingRecorded", "P0101", "--at", "2015-03-01", "--data",
        '{"modality": "renal_ultrasound"}')


def test_a_later_record_does_not_hide_an_item_overdue_on_the_date_asked(run: Cli) -> None:
    _ultrasound_after_high_ratio(run)
    listing = _same_as_status(run, "2015-02-22")
    # high ratio on 10 Jan: ultrasound due then, overdue from 9 Feb; done only on 1 Mar
    assert [(i["kind"], i["status"], i["due_on"], i["severity"]) for i in listing] == [
        ("renal_ultrasound_due", "overdue", "2015-01-10", "urgent")]
    assert _same_as_status(run, "2015-02-08")[0]["status"] == "due"  # the day before
    assert _same_as_status(run, "2015-02-09")[0]["status"] == "overdue"  # on the day
    assert _same_as_status(run, "2015-03-01") == []  # the ultrasound is done that day


def test_a_later_record_is_not_announced_early(run: Cli) -> None:
    run("lab", "P0101", "urine_calcium_creatinine", "2.5", "mmol/mmol", "--at", "2015-02-10")
    assert _same_as_status(run, "2015-02-05") == []  # collected after the date asked
    assert _same_as_status(run, "2015-02-09") == []
    assert [i["status"] for i in _same_as_status(run, "2015-02-10")] == ["due"]


def _monthly_course_to_the_cap(run: Cli) -> None:
    """30 kg, monthly: 15 + 30 + 30 mg in January, then 30 mg on the 7th of Feb..Oct: exactly
    11.5 mg/kg by 7 Oct 2015; the next dose, due 7 Nov, would cross the cap."""
    run("record", "MedicationStarted", "P0101", "--at", "2015-01-05", "--data",
        '{"course_id": "pam1", "drug": "pamidronate", "regimen": "monthly"}')
    doses = [("2015-01-05", "15"), ("2015-01-06", "30"), ("2015-01-07", "30")]
    doses += [(f"2015-{month:02d}-07", "30") for month in range(2, 11)]
    doses += [("2016-01-06", "30")]
    for day, mg in doses:
        run("infusion", "P0101", "--dose-mg", mg, "--weight-kg", "30", "--at", day)


def test_a_later_dose_does_not_hide_the_cap_warning(run: Cli) -> None:
    _monthly_course_to_the_cap(run)
    status = run.json("status", "P0101", "--at", "2015-10-31")
    assert status["pamidronate"]["rolling_year_mg_per_kg"] in ("11.5", 11.5)
    assert status["pamidronate"]["next_due"] == "2015-11-07"
    listing = _same_as_status(run, "2015-10-31")
    cap = [i for i in listing if i["kind"] == "annual_cap_would_be_exceeded"]
    assert [(i["status"], i["due_on"]) for i in cap] == [("due", "2015-11-07")]
    # the warning goes out 7 days before the dose: not yet on the 30th
    before = _same_as_status(run, "2015-10-30")
    assert [i["status"] for i in before if i["kind"] == "annual_cap_would_be_exceeded"] == [
        "due_soon"]


def test_known_at_lists_what_was_known_then(run: Cli) -> None:
    run("lab", "P0101", "urine_calcium_creatinine", "2.5", "mmol/mmol", "--at", "2015-01-10")
    lab_known = run.json("timeline", "P0101")[-1]["recorded_at"]
    # the ultrasound of 20 Jan is entered late, after the lab
    run("record", "ImagingRecorded", "P0101", "--at", "2015-01-20", "--data",
        '{"modality": "renal_ultrasound"}')
    assert _same_as_status(run, "2015-02-22") == []
    then = _same_as_status(run, "2015-02-22", "--known-at", lab_known)
    assert [(i["kind"], i["status"]) for i in then] == [("renal_ultrasound_due", "overdue")]
    before_anything = _same_as_status(run, "2015-02-22", "--known-at", "2015-01-01")
    assert before_anything == []
    text = run("due", "--at", "2015-02-22", "--known-at", "2015-01-01").stdout
    assert text.splitlines()[0] == ("as of 2015-02-22, known at 2015-01-01T23:59:59+01:00, "
                                    "replayed 1 patient(s) in 1 process(es)")


def test_the_header_says_today_comes_from_the_read_model(run: Cli) -> None:
    text = run("due").stdout
    assert text.splitlines()[0].endswith("known now, from the read model")
    past = run("due", "--at", "2015-02-22").stdout.splitlines()[0]
    assert past.startswith("as of 2015-02-22, known now, replayed 1 patient(s)")
