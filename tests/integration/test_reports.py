"""Reports from a real store: the cohort table (seed Table 4) on SQLite and PostgreSQL, the
course chart of a generated patient, and the pure helpers behind the chart."""

from __future__ import annotations

import csv
import io
import struct
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import click
import orjson
import pytest
from click.testing import CliRunner, Result

from events.store import EventStore
from events.store.engine import make_engine
from tracker import db
from tracker.cli.common import State
from tracker.cli.reports import chart_cmd, cohort_report_cmd
from tracker.clock import FixedClock
from tracker.importing import import_lines
from tracker.projections.course import disease_course
from tracker.protocol import DEFAULT_PROTOCOL
from tracker.reports.chart import Segment, rolling_series, state_segments
from tracker.status import Evaluation, evaluate
from tracker.synthetic import generate_cohort

TABLE4 = Path(__file__).resolve().parents[1] / "data" / "table4-cohort.jsonl"
CLOCK = FixedClock(datetime(2020, 1, 1, tzinfo=UTC))
AT = "2019-12-31"


@click.group()
@click.pass_context
def cli(ctx: click.Context) -> None:
    """The two report commands under a group that closes the app, as main.py does."""
    ctx.call_on_close(ctx.ensure_object(State).close)


cli.add_command(chart_cmd)
cli.add_command(cohort_report_cmd)


def load(url: str, lines: list[bytes]) -> None:
    engine = make_engine(url)
    try:
        import_lines(lines, EventStore(engine), clock=CLOCK, protocol=DEFAULT_PROTOCOL)
    finally:
        engine.dispose()


def invoke(url: str, *args: str) -> Result:
    return CliRunner().invoke(cli, list(args), env={"CNO_TRACKER_DATABASE_URL": url})


def table4_lines() -> list[bytes]:
    return TABLE4.read_bytes().splitlines()


def md_rows(text: str) -> dict[str, str]:
    """``| label | value | choice |`` lines of the Markdown table as label -> value."""
    rows: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("| ") and not line.startswith("| **"):
            cells = [c.strip() for c in line.strip("|").split(" | ")]
            rows[cells[0]] = cells[1]
    return rows


SEED_TABLE_4 = {
    "Sex (female), n (%)": "10 (83.3)",
    "Age at diagnosis (years), mean (SD)": "11.0 (1.6)",
    "Pain, n (%)": "12 (100.0)",
    "Functional impotence, n (%)": "9 (75.0)",
    "Fever, n (%)": "7 (58.3)",
    "Lower limbs, n (%)": "19 (51.4)",
    "Clavicle, n (%)": "5 (13.5)",
    "Ribs and/or sternum, n (%)": "4 (10.8)",
    "Hip, n (%)": "4 (10.8)",
    "Spine and/or sacrum, n (%)": "3 (8.1)",
    "Upper limbs, n (%)": "2 (5.4)",
    "Single focus, n (%)": "2 (16.7)",
    "Duration of symptoms until diagnosis (months), median (IQR)": "2.4 (4.0)",
    "Leukocytes (10⁹/L), mean (SD)": "10.7 (3.9)",
    "CRP (mg/L), median (IQR)": "18.1 (48.0)",
    "ESR (mm/h), mean (SD)": "53.4 (35.2)",
    "Oedema, n (%)": "9 (75.0)",
    "Cortical thickening, n (%)": "2 (16.7)",
    "Lysis and/or cortical disruption, n (%)": "2 (16.7)",
    "Periosteal reaction, n (%)": "2 (16.7)",
    "Infiltration, n (%)": "2 (16.7)",
    "Fibrosis, n (%)": "5 (62.5)",
    "Inflammation, n (%)": "4 (50.0)",
    "Necrosis, n (%)": "2 (25.0)",
    "No findings, n (%)": "1 (12.5)",
    "Antibiotic, n (%)": "7 (58.3)",
    "NSAIDs, n (%)": "12 (100.0)",
    "Corticoids, n (%)": "7 (58.3)",
    "Methotrexate, n (%)": "1 (8.3)",
    "Pamidronate, n (%)": "4 (33.3)",
    "Anti-TNFα, n (%)": "2 (16.7)",
    "Relapse (at least one), n (%)": "8 (66.7)",
    "Remission without treatment, n (%)": "10 (83.3)",
    "Duration until diagnosis over 5 months, n (%)": "4 (33.3)",
}


def test_table4_file_reproduces_the_seed_table(db_url: str) -> None:
    load(db_url, table4_lines())
    result = invoke(db_url, "cohort-report", "--from", "2010-01-01", "--to", "2015-12-31",
                    "--at", AT)
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "Included 12 of 12 patients." in out and "Excluded" not in out
    assert "**Location of foci (n = 37 foci)**" in out
    assert "**Biopsy (n = 8 patients biopsied)**" in out
    assert "**MRI (n = 12 patients with an MRI)**" in out
    rows = md_rows(out)
    for label, value in SEED_TABLE_4.items():
        assert rows.get(label) == value, (label, rows.get(label))
    assert "normality rejected, median (IQR)" in out and "normality not rejected" in out


def test_other_formats_carry_the_same_numbers(db_url: str) -> None:
    load(db_url, table4_lines())
    base = ("cohort-report", "--at", AT)
    js = invoke(db_url, *base, "--format", "json")
    assert js.exit_code == 0, js.output
    doc = orjson.loads(js.stdout)
    assert doc["patients"] == 12 and len(doc["included"]) == 12 and doc["excluded"] == []
    by_label = {r["variable"]: r for s in doc["sections"] for r in s["rows"]}
    assert by_label["Sex (female)"]["count"] == 10
    assert by_label["Sex (female)"]["percent"] == pytest.approx(83.3333, abs=1e-3)
    assert by_label["ESR (mm/h)"]["summary"]["method"] == "mean_sd"
    assert by_label["CRP (mg/L)"]["summary"]["method"] == "median_iqr"
    foci = next(s for s in doc["sections"] if s["title"] == "Location of foci")
    assert foci["n"] == 37 and foci["unit"] == "foci"

    cs = invoke(db_url, *base, "--format", "csv")
    assert cs.exit_code == 0, cs.output
    table = list(csv.DictReader(io.StringIO(cs.stdout)))
    lower = next(r for r in table if r["variable"] == "Lower limbs")
    assert (lower["count"], lower["denominator"], lower["percent"]) == ("19", "37", "51.4")
    crp = next(r for r in table if r["variable"] == "CRP (mg/L)")
    assert crp["statistic"] == "median (IQR)" and crp["value"] == "18.1 (48.0)"
    assert float(crp["shapiro_p"]) < 0.05

    page = invoke(db_url, *base, "--format", "html")
    assert page.exit_code == 0, page.output
    assert page.stdout.startswith("<!DOCTYPE html>") and "</html>" in page.stdout
    assert "<td class='num'>10 (83.3)</td>" in page.stdout


def _line(kind: str, patient: str, on: str, data: dict[str, object]) -> bytes:
    return orjson.dumps({"type": kind, "patient": patient, "occurred_at": on, "data": data})


CONFIRMED = {"multifocal_lesions": True, "osteolytic_or_sclerotic_lesion": True}


def _extra_patients() -> list[bytes]:
    """X4-01 never diagnosed; X4-02 not Jansson-confirmed; X4-03 14 years old to the day at
    diagnosis (excluded); X4-04 diagnosed the day before its 14th birthday (included)."""
    out = [_line("PatientEnrolled", "X4-01", "2012-01-10",
                 {"birth_date": "2002-01-01", "sex": "male"}),
           _line("PatientEnrolled", "X4-02", "2012-01-10",
                 {"birth_date": "2002-01-01", "sex": "male"}),
           _line("DiagnosisAssessed", "X4-02", "2012-02-01",
                 {"diagnosed_on": "2012-02-01", "criteria": {"multifocal_lesions": True}})]
    for ref, diagnosed in (("X4-03", "2014-05-11"), ("X4-04", "2014-05-10")):
        out += [_line("PatientEnrolled", ref, "2014-04-01",
                      {"birth_date": "2000-05-11", "sex": "female"}),
                _line("DiagnosisAssessed", ref, diagnosed,
                      {"diagnosed_on": diagnosed, "criteria": CONFIRMED})]
    return out


def test_inclusion_filters_count_who_was_excluded_and_why(db_url: str) -> None:
    load(db_url, table4_lines() + _extra_patients())
    # T4-03 is diagnosed on 2011-02-07 and T4-11 on 2014-09-15: both bounds are inclusive
    result = invoke(db_url, "cohort-report", "--from", "2011-02-07", "--to", "2014-09-15",
                    "--at", AT)
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "Included 10 of 16 patients." in out
    assert "Excluded 1: no diagnosis recorded (X4-01)." in out
    assert "Excluded 1: Jansson criteria not met (X4-02)." in out
    assert "Excluded 1: aged 14 or over at diagnosis (X4-03)." in out
    assert "Excluded 2: diagnosed before --from (T4-01, T4-02)." in out
    assert "Excluded 1: diagnosed after --to (T4-12)." in out
    older = invoke(db_url, "cohort-report", "--from", "2011-02-08", "--to", "2014-09-14",
                   "--at", AT, "--max-age", "15")
    assert "Excluded 3: diagnosed before --from (T4-01, T4-02, T4-03)." in older.stdout
    assert "Excluded 2: diagnosed after --to (T4-11, T4-12)." in older.stdout
    assert "Included 9 of 16 patients." in older.stdout  # X4-03 back in at --max-age 15


def test_bad_dates_are_refused(db_url: str) -> None:
    result = invoke(db_url, "cohort-report", "--from", "2015-01-01", "--to", "2014-01-01")
    assert result.exit_code == 2 and "--from is after --to" in result.output
    result = invoke(db_url, "cohort-report", "--at", "31/12/2019")
    assert result.exit_code == 2 and "not an ISO 8601 date" in result.output


# ---------------------------------------------------------------- the chart

@pytest.fixture(scope="module")
def table4_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    url = f"sqlite:///{tmp_path_factory.mktemp('reports') / 'table4.db'}"
    db.upgrade(url)
    load(url, table4_lines())
    yield url


def evaluation(url: str, patient: str, at: date) -> Evaluation:
    engine = make_engine(url)
    try:
        events = EventStore(engine).read_stream(patient)
    finally:
        engine.dispose()
    return evaluate(patient, events, at=at, known_at=None, protocol=DEFAULT_PROTOCOL)


def test_state_bands_follow_the_course_and_split_where_remission_begins(table4_url: str
                                                                        ) -> None:
    at = date(2019, 12, 31)
    ev = evaluation(table4_url, "T4-02", at)
    d = date
    assert state_segments(ev.facts, at, DEFAULT_PROTOCOL) == [
        Segment(d(2010, 9, 6), d(2010, 11, 19), "active"),
        Segment(d(2010, 11, 19), d(2011, 2, 17), "inactive"),  # relapse before remission
        Segment(d(2011, 2, 17), d(2011, 4, 3), "active"),
        Segment(d(2011, 4, 3), d(2011, 8, 18), "inactive"),
        Segment(d(2011, 8, 18), d(2020, 1, 1), "remission"),  # 2011-02-17 + 6 months + 1 day
    ]
    assert ev.course.relapse_dates == [d(2011, 2, 17)]
    before = disease_course([f for f in ev.facts if f.on <= d(2011, 8, 17)], d(2011, 8, 17),
                            DEFAULT_PROTOCOL)
    on = disease_course([f for f in ev.facts if f.on <= d(2011, 8, 18)], d(2011, 8, 18),
                        DEFAULT_PROTOCOL)
    assert (before.state, on.state) == ("inactive", "remission")


def test_rolling_year_line_drops_the_day_a_dose_leaves_the_window(table4_url: str) -> None:
    ev = evaluation(table4_url, "T4-08", date(2019, 12, 31))
    first = date(2013, 4, 15)  # 20 mg, then 40 mg, 40 mg, then 40 mg monthly, at 40 kg
    assert ev.pamidronate.doses[0].on == first
    series = dict(rolling_series(ev.pamidronate.doses, first, date(2015, 1, 1),
                                 DEFAULT_PROTOCOL))
    assert series[first] == pytest.approx(0.5)
    assert series[first + timedelta(days=2)] == pytest.approx(2.5)
    assert series[date(2013, 9, 12)] == pytest.approx(7.5)  # the last monthly dose
    assert date(2014, 4, 14) not in series  # unchanged the day before
    assert series[first + timedelta(days=365)] == pytest.approx(7.0)  # first dose leaves
    assert series[date(2014, 9, 12)] == pytest.approx(0.0)


def _generated_pamidronate_patient() -> tuple[str, str, list[bytes]]:
    """(reference, birth date, lines) of the first generated patient given pamidronate."""
    lines = list(generate_cohort(12, seed=7, until=date(2019, 6, 30)))
    patient = next(x["patient"] for x in lines if x["type"] == "InfusionAdministered"
                   and x["data"]["drug"] == "pamidronate")
    mine = [x for x in lines if x["patient"] == patient]
    born = next(x["data"]["birth_date"] for x in mine if x["type"] == "PatientEnrolled")
    return patient, born, [orjson.dumps(x) for x in mine]


def png_size(blob: bytes) -> tuple[int, int]:
    assert blob[:8] == b"\x89PNG\r\n\x1a\n"
    assert blob[12:16] == b"IHDR"
    width, height = struct.unpack(">II", blob[16:24])
    return width, height


def test_chart_of_a_generated_patient_as_png_and_svg(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'gen.db'}"
    db.upgrade(url)
    patient, born, lines = _generated_pamidronate_patient()
    load(url, lines)

    png = tmp_path / "course.png"
    result = invoke(url, "chart", patient, "--at", "2019-06-30", "-o", str(png))
    assert result.exit_code == 0, result.output
    blob = png.read_bytes()
    width, height = png_size(blob)
    assert width >= 1000 and height >= 1000
    assert len(blob) > 20_000

    svg = tmp_path / "course.svg"
    result = invoke(url, "chart", patient, "--at", "2019-06-30", "-o", str(svg))
    assert result.exit_code == 0, result.output
    text = svg.read_text(encoding="utf-8")
    assert text.lstrip().startswith("<?xml") and "<svg" in text
    assert f"Course of {patient}" in text  # title with the pseudonymous reference only
    assert "CNO" not in text and "CRMO" not in text
    assert born not in text and born.replace("-", "/") not in text
    for label in ("Disease state", "Treatment ladder", "Pamidronate doses", "yearly cap",
                  "Ionized calcium", "Urine Ca/Cr", "25-OH vitamin D", "Creatinine",
                  "Monitoring", "cap 11.5 mg/kg/year", "relapse"):
        assert label in text, label


def test_chart_refuses_other_formats_and_unknown_patients(table4_url: str,
                                                           tmp_path: Path) -> None:
    result = invoke(table4_url, "chart", "T4-08", "-o", str(tmp_path / "c.pdf"))
    assert result.exit_code == 2 and ".png or .svg" in result.output
    result = invoke(table4_url, "chart", "Z9-99", "--at", AT, "-o", str(tmp_path / "c.png"))
    assert result.exit_code == 4 and "no patient 'Z9-99'" in result.output
    # everything was recorded on 2020-01-01: known at the end of 2019, nothing to draw
    result = invoke(table4_url, "chart", "T4-08", "--at", AT, "--known-at", "2019-12-31",
                    "-o", str(tmp_path / "c.png"))
    assert result.exit_code == 4 and "nothing recorded" in result.output
    assert not (tmp_path / "c.png").exists()


def test_alert_streams_are_not_counted_as_patients(db_url: str) -> None:
    """Issue 10 part 2 item 2: once the worker had written alert streams, each was
    listed as a "not enrolled" patient."""
    from alerts.outbox import stream_of
    from events.vocabulary import AlertCancelled
    from tests.support.events import new_event

    load(db_url, table4_lines())
    engine = make_engine(db_url)
    try:
        alert_id = "00000000-0000-4000-8000-0000000000aa"
        EventStore(engine).append(stream_of(alert_id), 0, [new_event(
            "AlertCancelled", AlertCancelled(alert_id=alert_id, reason="resolved"))])
    finally:
        engine.dispose()
    result = invoke(db_url, "cohort-report", "--from", "2010-01-01", "--to", "2015-12-31",
                    "--at", AT)
    assert result.exit_code == 0, result.output
    assert "Included 12 of 12 patients." in result.stdout
    assert "Excluded" not in result.stdout and "alert:" not in result.stdout
