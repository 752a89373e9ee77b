"""The daily commands, the status contract, the audit views and the protocol file, as a
user runs them (on SQLite and PostgreSQL)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner, Result
from sqlalchemy import text

from events.store import EventStore
from events.store.engine import make_engine
from tracker.cli.main import cli

CONTRACT_KEYS = {"patient", "at", "known_at", "disease", "diagnosis", "pamidronate",
                 "monitoring", "findings", "treatment", "alerts"}


class Cli:
    def __init__(self, db_url: str, **env: str) -> None:
        self.env = {"CNO_TRACKER_DATABASE_URL": db_url, **env}
        self.runner = CliRunner()

    def __call__(self, *args: str, ok: bool = True) -> Result:
        result = self.runner.invoke(cli, list(args), env=self.env)
        if ok:
            assert result.exit_code == 0, result.output
        return result

    def json(self, *args: str) -> Any:
        return orjson.loads(self(*args, "--json").stdout)


@pytest.fixture
def run(db_url: str) -> Cli:
    c = Cli(db_url)
    c("record", "PatientEnrolled", "P0007", "--at", "2014-01-10", "--data",
      '{"birth_date": "2003-05-01", "sex": "female", "symptom_onset": "2013-11-01"}')
    return c


def test_friendly_commands_record_what_they_say(run: Cli) -> None:
    run("visit", "P0007", "--at", "2015-03-10", "--pain", "--limitation",
        "--lesion", "clavicle:left", "--lesion", "tibia", "--weight", "31", "--height", "140")
    run("lab", "P0007", "calcium", "9.2", "mg/dL", "--at", "2015-03-11T08:10:00+01:00")
    run("infusion", "P0007", "--dose-mg", "15", "--weight-kg", "30.2",
        "--at", "2015-03-12T09:30:00+01:00", "--paracetamol", "--hours", "3.5")
    events = run.json("timeline", "P0007")
    assert [e["type"] for e in events] == ["PatientEnrolled", "VisitRecorded",
                                           "LabResultRecorded", "InfusionAdministered"]
    visit, lab, infusion = (e["data"] for e in events[1:])
    assert visit["functional_limitation"] is True and visit["swelling"] is False
    assert visit["active_lesions"] == [{"site": "clavicle", "side": "left"}, {"site": "tibia"}]
    assert (lab["unit"], lab["canonical_unit"]) == ("mg/dL", "mmol/L")
    assert lab["canonical_value"] == pytest.approx(9.2 / 4.008, abs=1e-6)
    assert infusion["premedication_paracetamol"] is True and infusion["drug"] == "pamidronate"
    # clinical times come back as entered: local time with the centre's offset
    assert [e["occurred_at"] for e in events[1:]] == [
        "2015-03-10T00:00:00+01:00", "2015-03-11T08:10:00+01:00", "2015-03-12T09:30:00+01:00"]


def test_a_friendly_command_refuses_bad_input_with_the_field(run: Cli) -> None:
    result = run("lab", "P0007", "calcium", "9.2", "mg/L", "--at", "2015-03-11", ok=False)
    assert result.exit_code == 2
    assert "data.unit" in result.output and "mmol/L, mg/dL" in result.output


def test_status_json_keeps_the_contract(run: Cli) -> None:
    run("visit", "P0007", "--at", "2015-03-10", "--pain")
    run("visit", "P0007", "--at", "2015-05-01", "--no-pain")
    status = run.json("status", "P0007", "--at", "2016-01-01")
    assert set(status) >= CONTRACT_KEYS
    assert status["at"] == "2016-01-01" and status["known_at"] is None
    disease = status["disease"]
    assert set(disease) == {"state", "in_relapse", "relapse_count", "relapse_dates",
                            "last_activity", "remission_since", "on_treatment",
                            "silent_radiological_activity"}
    # 10 Mar + 6 months = 10 Sep: remission from 11 Sep
    assert (disease["state"], disease["remission_since"]) == ("remission", "2015-09-11")
    assert set(status["pamidronate"]) >= {
        "doses", "cycles", "lifetime_mg", "lifetime_mg_per_kg", "rolling_year_mg_per_kg",
        "annual_cap_mg_per_kg", "remaining_mg_per_kg", "next_due", "next_dose_exceeds_cap",
        "next_dose_fits_on", "deviations"}
    assert set(status["treatment"]) >= {"step", "open_courses", "corticoid_days"}
    text_out = run("status", "P0007", "--at", "2016-01-01").stdout
    assert "remission since 2015-09-11" in text_out


def test_explain_names_the_rule_and_the_events(run: Cli) -> None:
    run("visit", "P0007", "--at", "2015-03-10", "--pain", "--by", "dr.ruiz")
    run("visit", "P0007", "--at", "2015-05-01", "--no-pain")
    out = run("explain", "P0007", "remission_since", "--at", "2016-01-01").stdout
    assert "2015-09-11" in out and "2015-03-10" in out and "dr.ruiz" in out
    missing = run("explain", "P0007", "nonsense", ok=False)
    assert missing.exit_code == 4 and "try one of" in missing.output


def test_known_at_and_corrections_in_the_audit_views(run: Cli, db_url: str) -> None:
    run("visit", "P0007", "--at", "2015-03-10", "--pain")
    engine = make_engine(db_url)
    visit = EventStore(engine).read_stream("P0007")[1]
    before_fix = visit.recorded_at.isoformat()
    engine.dispose()
    run("record", "EntryCorrected", "P0007", "--at", "2015-03-11", "--data", orjson.dumps({
        "target_event_id": visit.event_id, "reason": "pain was in the other leg: no symptoms",
        "data": {"pain": False, "swelling": False, "functional_limitation": False}}).decode())
    now_view = run.json("timeline", "P0007")
    marked = next(e for e in now_view if e["event_id"] == visit.event_id)
    assert marked["corrected_by"] is not None and marked["voided"] is False
    then_view = run.json("timeline", "P0007", "--known-at", before_fix)
    assert [e["type"] for e in then_view] == ["PatientEnrolled", "VisitRecorded"]
    assert then_view[1]["corrected_by"] is None
    # with the visit corrected, the last activity is the enrolment's onset (Nov 2013)
    assert run.json("status", "P0007", "--at", "2015-04-01")["disease"]["state"] == "remission"
    then = run.json("status", "P0007", "--at", "2015-04-01", "--known-at", before_fix)
    assert then["disease"]["state"] == "active" and then["known_at"] is not None


def test_due_lists_open_items_across_patients(run: Cli) -> None:
    run("record", "MedicationStarted", "P0007", "--at", "2015-03-01", "--data",
        '{"course_id": "c1", "drug": "pamidronate", "regimen": "quarterly"}')
    run("infusion", "P0007", "--dose-mg", "15", "--weight-kg", "30", "--at", "2015-03-02")
    run("infusion", "P0007", "--dose-mg", "30", "--weight-kg", "30", "--at", "2015-03-03")
    listing = run.json("due", "--at", "2015-03-10")
    kinds = {(i["kind"], i["item"], i["status"]) for i in listing}
    # dose 2 on 3 Mar: labs due from 4 Mar, overdue on and after 10 Mar (+7)
    assert ("post_dose_labs_due", "post_dose_2_labs", "overdue") in kinds
    assert ("baseline_labs_due", "baseline_labs", "overdue") in kinds
    day_before = {(i["item"], i["status"]) for i in run.json("due", "--at", "2015-03-09")}
    assert ("post_dose_2_labs", "due") in day_before


def test_verify_exits_6_and_names_a_tampered_event(run: Cli, db_url: str) -> None:
    run("visit", "P0007", "--at", "2015-03-10", "--pain")
    assert "every hash chain intact" in run("verify").stdout
    engine = make_engine(db_url)
    store = EventStore(engine)
    target = store.read_stream("P0007")[1]
    with engine.begin() as conn:
        if store.dialect == "postgresql":
            conn.execute(text("SET LOCAL session_replication_role = replica"))
        else:
            conn.execute(text("DROP TRIGGER events_no_update"))
        conn.execute(text("UPDATE events SET recorded_by = 'mallory' WHERE event_id = :e"),
                     {"e": target.event_id})
    engine.dispose()
    result = run("verify", ok=False)
    assert result.exit_code == 6
    assert f"P0007 v2 ({target.event_id})" in result.output


def test_a_protocol_file_changes_the_thresholds_and_the_fingerprint(
        db_url: str, tmp_path: Path) -> None:
    base = Cli(db_url)
    base("record", "PatientEnrolled", "P0008", "--at", "2014-01-10", "--data",
         '{"birth_date": "2003-05-01", "sex": "male"}')
    base("visit", "P0008", "--at", "2015-03-10", "--pain")
    base("visit", "P0008", "--at", "2015-05-01")
    proto = tmp_path / "protocol.toml"
    proto.write_text("[protocol]\nremission_months = 3\n")
    custom = Cli(db_url, CNO_TRACKER_PROTOCOL_FILE=str(proto))
    default = base.json("status", "P0008", "--at", "2015-07-01")
    changed = custom.json("status", "P0008", "--at", "2015-07-01")
    assert default["disease"]["state"] == "inactive"
    assert (changed["disease"]["state"], changed["disease"]["remission_since"]) == (
        "remission", "2015-06-11")
    assert default["protocol"]["fingerprint"] != changed["protocol"]["fingerprint"]
    proto.write_text("[protocol]\nremission_months = 0\ntimezone = 'Mars/Olympus'\n")
    refused = custom("status", "P0008", ok=False)
    assert refused.exit_code == 5
    assert "remission_months" in refused.output and "Mars/Olympus" in refused.output
