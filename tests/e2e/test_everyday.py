"""Everyday commands as a newcomer meets them: enroll, info, --version, the help texts,
one-off errors without a line number, exit 4 for an unknown patient everywhere, db upgrade
saying what it did, and the infusion's deviations printed at entry (SQLite and PostgreSQL)."""

from __future__ import annotations

from pathlib import Path

import pytest

from events.vocabulary import IMPORTABLE_TYPES, UNITS
from tests.e2e.test_cli_clinical import Cli
from tracker import db
from tracker.cli.everyday import database_label
from tracker.protocol import load_protocol


@pytest.fixture
def cli(db_url: str) -> Cli:
    return Cli(db_url)


def test_enroll_starts_a_record_with_its_dates(cli: Cli) -> None:
    out = cli("enroll", "P0007", "--born", "2006-04-12", "--sex", "female",
              "--onset", "2015-01-20", "--first-consultation", "2015-02-10").output
    assert out.startswith("recorded PatientEnrolled for P0007: ")
    (enrolled,) = cli.json("timeline", "P0007")
    assert enrolled["occurred_at"].startswith("2015-02-10T00:00")  # the first consultation
    assert enrolled["data"] == {"birth_date": "2006-04-12", "sex": "female",
                                "symptom_onset": "2015-01-20",
                                "first_consultation": "2015-02-10"}
    again = cli("enroll", "P0007", "--born", "2006-04-12", "--sex", "female", ok=False)
    assert again.exit_code == 2
    assert "P0007 is already enrolled" in again.stderr


def test_enroll_refuses_bad_dates_and_sexes_in_one_line(cli: Cli) -> None:
    bad = cli("enroll", "P0001", "--born", "12/04/2006", "--sex", "female", ok=False)
    assert bad.exit_code == 2
    assert "--born" in bad.stderr and "Traceback" not in bad.output
    unknown = cli("enroll", "P0001", "--born", "2006-04-12", "--sex", "f", ok=False)
    assert unknown.exit_code == 2 and "--sex" in unknown.stderr
    assert cli("info").output.count("patients     0") == 1


def test_a_one_off_entry_error_names_the_field_not_a_line(cli: Cli) -> None:
    cli("enroll", "P0007", "--born", "2006-04-12", "--sex", "male", "--at", "2015-02-10")
    bad = cli("lab", "P0007", "ionized_calcium", "0.95", "mmol/X", "--at", "2015-03-04",
              ok=False)
    assert bad.exit_code == 2
    assert "line 1" not in bad.stderr
    assert "error: data.unit: unit 'mmol/X' is not accepted for ionized_calcium" in bad.stderr


COMMANDS_ABOUT_A_PATIENT = [
    ("visit", "P0404", "--at", "2015-03-10", "--pain"),
    ("lab", "P0404", "crp", "3", "mg/L", "--at", "2015-03-10"),
    ("infusion", "P0404", "--dose-mg", "15", "--weight-kg", "30", "--at", "2015-03-10"),
    ("record", "MedicationStopped", "P0404", "--at", "2015-03-10", "--data",
     '{"course_id": "c1"}'),
    ("status", "P0404"),
    ("explain", "P0404", "state"),
    ("timeline", "P0404"),
]


@pytest.mark.parametrize("args", COMMANDS_ABOUT_A_PATIENT, ids=lambda a: a[0])
def test_an_unknown_patient_is_not_found_in_the_named_database(cli: Cli, db_url: str,
                                                                args: tuple[str, ...]) -> None:
    result = cli(*args, ok=False)
    assert result.exit_code == 4, result.output
    assert "no patient 'P0404'" in result.stderr
    assert database_label(db_url) in result.stderr
    assert cli("info").output.count("events       0") == 1  # nothing half-written


def test_chart_of_an_unknown_patient_is_not_found(cli: Cli, tmp_path: Path) -> None:
    result = cli("chart", "P0404", "-o", str(tmp_path / "c.png"), ok=False)
    assert result.exit_code == 4 and "no patient 'P0404'" in result.stderr
    assert not (tmp_path / "c.png").exists()


#: the newest revision in migrations/versions (one head: the revisions form one chain)
(HEAD,) = db.head_revisions("sqlite://")


def test_the_password_of_the_database_is_masked() -> None:
    label = database_label("postgresql://cno:s3cret@db.internal:5432/cno")
    assert "s3cret" not in label and label == "postgresql://cno:***@db.internal:5432/cno"


def test_info_says_where_what_and_under_which_rules(cli: Cli, db_url: str) -> None:
    cli("enroll", "P0007", "--born", "2006-04-12", "--sex", "male", "--at", "2015-02-10")
    cli("visit", "P0007", "--at", "2015-03-10", "--pain")
    lines = dict(line.split(None, 1) if not line.startswith("time zone") else
                 ("time zone", line[len("time zone"):].strip())
                 for line in cli("info").output.splitlines())
    assert lines["database"] == database_label(db_url)
    assert lines["schema"] == f"{HEAD} (up to date)"
    assert (lines["events"], lines["patients"]) == ("2", "1")
    assert lines["time zone"] == "Europe/Madrid"
    assert lines["protocol"] == f"{load_protocol(None).fingerprint} (the seed protocol)"
    assert lines["version"] == cli("--version").output.split()[-1]


def test_db_upgrade_says_what_it_did(cli: Cli, db_url: str) -> None:
    out = cli("db", "upgrade").output
    assert out.strip() == f"{database_label(db_url)}: schema already at {HEAD}; nothing to do"


def test_version_and_help_texts_list_the_vocabulary(cli: Cli) -> None:
    assert cli("--version").output.startswith("cno-tracker, version ")
    record_help = cli("record", "--help").output
    assert all(name in record_help for name in IMPORTABLE_TYPES)
    assert "AlertRaised" not in record_help  # the worker's own events are not for entry
    lab_help = cli("lab", "--help").output
    for analyte, rule in UNITS.items():
        line = next(x for x in lab_help.splitlines() if x.split()[:1] == [analyte])
        assert rule.canonical in line and all(alt in line for alt in rule.alternatives)
    assert "enroll" in cli("--help").output and "info" in cli("--help").output


def test_an_infusion_prints_the_deviations_its_dose_creates(cli: Cli) -> None:
    cli("enroll", "P0007", "--born", "2006-04-12", "--sex", "male", "--at", "2015-02-10")
    cli("record", "MedicationStarted", "P0007", "--at", "2015-03-01", "--data",
        '{"course_id": "c3", "drug": "pamidronate", "regimen": "quarterly"}')
    out = cli("infusion", "P0007", "--dose-mg", "400", "--weight-kg", "30",
              "--at", "2015-03-02T09:30:00+01:00").output
    kinds = [line.split()[1].rstrip(":") for line in out.splitlines()
             if line.strip().startswith("deviation")]
    assert {"dose_above_60_mg", "dose_above_1_mg_per_kg", "annual_cap_exceeded"} <= set(kinds)
    assert "dose 400 mg; maximum 60 mg" in out
    cli("infusion", "P0007", "--dose-mg", "15", "--weight-kg", "30",
        "--at", "2016-06-02T09:30:00+02:00", "--key", "inf-2")
    # a repeat of the same entry writes nothing and reports nothing new
    repeat = cli("infusion", "P0007", "--dose-mg", "15", "--weight-kg", "30",
                 "--at", "2016-06-02T09:30:00+02:00", "--key", "inf-2").output
    assert "already recorded" in repeat and "deviation" not in repeat


def test_an_infusion_within_the_protocol_says_so(cli: Cli) -> None:
    cli("enroll", "P0007", "--born", "2006-04-12", "--sex", "male", "--at", "2015-02-10")
    for analyte, value, unit in [("leukocytes", "7", "10*9/L"), ("haemoglobin", "130", "g/L"),
                                 ("platelets", "250", "10*9/L"), ("calcium", "2.4", "mmol/L"),
                                 ("phosphate", "1.4", "mmol/L"), ("magnesium", "0.9", "mmol/L"),
                                 ("urine_calcium_creatinine", "0.5", "mmol/mmol"),
                                 ("vitamin_d_25oh", "70", "nmol/L"), ("alt", "20", "U/L"),
                                 ("ast", "25", "U/L"), ("creatinine", "40", "umol/L")]:
        cli("lab", "P0007", analyte, value, unit, "--at", "2015-02-20")
    out = cli("infusion", "P0007", "--dose-mg", "15", "--weight-kg", "30",
              "--at", "2015-03-02T09:30:00+01:00").output
    assert "no protocol deviation for this dose" in out, out
