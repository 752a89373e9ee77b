"""The synthetic cohort generator: import format, determinism, realism, protocol conformance."""

from __future__ import annotations

import io
import random
import re
from collections import defaultdict
from datetime import date, datetime, timedelta
from pathlib import Path
from statistics import mean
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pytest

import tracker.synthetic.cohort as gen
import tracker.synthetic.patient as patient_module
from events.vocabulary import IMPORTABLE_TYPES, UNITS, to_canonical
from events.vocabulary.common import check_patient_ref, parse_when
from tracker.projections.common import add_months
from tracker.synthetic import generate_cohort, write_cohort

UNTIL = date(2020, 12, 31)
KEYS = ["type", "patient", "occurred_at", "recorded_by", "idempotency_key", "data"]
REPO = Path(__file__).resolve().parents[2]
Line = dict[str, Any]


def day_of(line: Line) -> date:
    return date.fromisoformat(line["occurred_at"][:10])


def instant(line: Line) -> datetime:
    when = parse_when(line["occurred_at"])
    assert isinstance(when, datetime)
    return when


def by_patient(lines: list[Line]) -> dict[str, list[Line]]:
    out: dict[str, list[Line]] = defaultdict(list)
    for line in lines:
        out[line["patient"]].append(line)
    return out


@pytest.fixture(scope="module")
def cohort200() -> list[Line]:
    return list(generate_cohort(200, 11, UNTIL))


@pytest.fixture(scope="module")
def cohort500() -> dict[str, list[Line]]:
    return by_patient(list(generate_cohort(500, 3, UNTIL)))


def has_relapse(events: list[Line]) -> bool:
    """clinical-rules §1: a symptomatic visit after a non-symptomatic one documenting absence
    from ``b`` (its symptom_free_since, else its date), with the visit after b + 1 month."""
    last_symptomatic: date | None = None
    free_from: date | None = None
    for e in events:
        if e["type"] != "VisitRecorded":
            continue
        d = e["data"]
        on = day_of(e)
        if d["pain"] or d["swelling"] or d["functional_limitation"]:
            if last_symptomatic and free_from and on > add_months(free_from, 1):
                return True
            last_symptomatic, free_from = on, None
        elif last_symptomatic is not None and free_from is None:
            since = d.get("symptom_free_since")
            free_from = date.fromisoformat(since) if since else on
    return False


def started(events: list[Line], drug: str) -> list[Line]:
    return [e for e in events if e["type"] == "MedicationStarted" and e["data"]["drug"] == drug]


# -- determinism --------------------------------------------------------------------------------

def test_same_seed_gives_the_same_bytes_and_another_seed_does_not() -> None:
    a, b, c = io.BytesIO(), io.BytesIO(), io.BytesIO()
    assert write_cohort(a, 30, 7, UNTIL) == write_cohort(b, 30, 7, UNTIL)
    write_cohort(c, 30, 8, UNTIL)
    assert a.getvalue() == b.getvalue()
    assert a.getvalue() != c.getvalue()


def test_a_smaller_cohort_is_a_prefix_of_a_larger_one() -> None:
    small = list(generate_cohort(5, 7, UNTIL))
    large = list(generate_cohort(12, 7, UNTIL))
    assert large[:len(small)] == small
    assert large[len(small)]["patient"] == "G7-0006"


def test_no_global_random_state_is_used_or_changed() -> None:
    random.seed(1)
    expected = random.random()
    random.seed(1)
    list(generate_cohort(3, 7, UNTIL))
    assert random.random() == expected


def test_write_cohort_to_text_stream_path_and_binary_stream_agree(tmp_path: Path) -> None:
    binary, text = io.BytesIO(), io.StringIO()
    n = write_cohort(binary, 8, 5, UNTIL)
    assert write_cohort(text, 8, 5, UNTIL) == n
    assert write_cohort(tmp_path / "c.jsonl", 8, 5, UNTIL) == n
    assert write_cohort(str(tmp_path / "d.jsonl"), 8, 5, UNTIL) == n
    raw = binary.getvalue()
    assert raw == text.getvalue().encode() == (tmp_path / "c.jsonl").read_bytes()
    assert raw.count(b"\n") == n and raw.endswith(b"\n")
    assert b": " not in raw and b", " not in raw[:200]  # compact JSON
    assert [orjson.loads(x) for x in raw.splitlines()] == list(generate_cohort(8, 5, UNTIL))


def test_zero_patients_write_nothing() -> None:
    out = io.BytesIO()
    assert write_cohort(out, 0, 7, UNTIL) == 0
    assert out.getvalue() == b""


def test_negative_patient_count_is_refused() -> None:
    with pytest.raises(ValueError, match="patients"):
        list(generate_cohort(-1, 7, UNTIL))


def test_until_must_leave_30_days_after_the_start_year_began() -> None:
    with pytest.raises(ValueError, match="30 days"):
        list(generate_cohort(1, 7, date(2010, 1, 30)))
    lines = list(generate_cohort(3, 7, date(2010, 1, 31)))  # exactly 30 days: accepted
    assert lines and all(day_of(x) <= date(2010, 1, 31) for x in lines)
    assert list(generate_cohort(1, 7, date(2013, 1, 31), start_year=2013))


# -- format -------------------------------------------------------------------------------------

def test_every_line_is_in_the_import_format_and_validates(cohort200: list[Line]) -> None:
    keys: set[str] = set()
    for line in cohort200:
        assert list(line) == KEYS
        model = IMPORTABLE_TYPES[line["type"]]
        model.model_validate_json(orjson.dumps(line["data"]))
        assert check_patient_ref(line["patient"]) == line["patient"]
        assert re.fullmatch(r"G11-\d{4}", line["patient"])
        when = parse_when(line["occurred_at"])
        if isinstance(when, datetime):
            assert line["type"] in ("LabResultRecorded", "InfusionAdministered",
                                    "AdverseEventRecorded")
            local = when.astimezone(ZoneInfo("Europe/Madrid"))
            assert local.utcoffset() == when.utcoffset()  # the centre's real offset that day
        assert line["recorded_by"] in ("dr.ruiz", "dr.martin", "nurse.lopez", "nurse.garcia",
                                       "lab.feed", "import")
        keys.add(line["idempotency_key"])
    assert len(keys) == len(cohort200)
    assert len({x["type"] for x in cohort200}) >= 12


def test_every_patient_is_enrolled_before_any_other_event(cohort200: list[Line]) -> None:
    seen: set[str] = set()
    previous = None
    for line in cohort200:
        if line["patient"] != previous:  # patients come in one contiguous block each
            assert line["patient"] not in seen
            assert line["type"] == "PatientEnrolled"
            seen.add(line["patient"])
            enrolled_on, previous = day_of(line), line["patient"]
        else:
            assert line["type"] != "PatientEnrolled"
            assert day_of(line) >= enrolled_on
    assert len(seen) == 200


def test_each_patient_is_in_clinical_order(cohort200: list[Line]) -> None:
    for events in by_patient(cohort200).values():
        days = [day_of(e) for e in events]
        assert days == sorted(days)
        timed = [instant(e) for e in events if len(e["occurred_at"]) > 10]
        assert timed == sorted(timed)


def test_nothing_after_until(cohort200: list[Line]) -> None:
    assert max(day_of(x) for x in cohort200) <= UNTIL
    short = list(generate_cohort(40, 7, date(2016, 12, 31)))
    assert max(day_of(x) for x in short) <= date(2016, 12, 31)


def test_the_until_filter_keeps_the_day_itself_and_drops_the_day_after(
        monkeypatch: pytest.MonkeyPatch) -> None:
    until = date(2016, 6, 30)

    def fake(rng: random.Random, ref: str, diagnosis: date, zone: ZoneInfo) -> gen.SimulatedPatient:
        p = gen.SimulatedPatient(rng, ref, diagnosis, zone)
        for day in (until - timedelta(days=1), until, until + timedelta(days=1)):
            p.add("VisitRecorded", day, {"pain": True, "swelling": False,
                                         "functional_limitation": False}, "dr.ruiz")
        p.add("LabResultRecorded", until, {"analyte": "esr", "value": 9.0, "unit": "mm/h"},
              "lab.feed", 23 * 60 + 30)
        return p

    monkeypatch.setattr(gen, "_simulate", fake)
    lines = list(generate_cohort(1, 7, until))
    assert [x["occurred_at"] for x in lines] == [
        "2016-06-29", "2016-06-30", "2016-06-30T23:30:00+02:00"]


@pytest.mark.parametrize(("day", "offset"), [
    (date(2015, 3, 28), "+01:00"), (date(2015, 3, 29), "+02:00"), (date(2015, 3, 30), "+02:00"),
    (date(2015, 10, 24), "+02:00"), (date(2015, 10, 25), "+01:00"),
    (date(2015, 10, 26), "+01:00"), (date(2016, 3, 26), "+01:00"), (date(2016, 3, 27), "+02:00"),
])
def test_madrid_offset_changes_on_the_last_sunday(day: date, offset: str) -> None:
    assert patient_module._offset(day, ZoneInfo("Europe/Madrid")) == offset
    noon = datetime(day.year, day.month, day.day, 12, tzinfo=ZoneInfo("Europe/Madrid"))
    assert noon.isoformat()[-6:] == offset


def test_lab_units_are_mostly_canonical_with_some_accepted_alternatives(
        cohort200: list[Line]) -> None:
    labs = [x["data"] for x in cohort200 if x["type"] == "LabResultRecorded"]
    canonical = sum(d["unit"] == UNITS[d["analyte"]].canonical for d in labs)
    assert 0.8 < canonical / len(labs) < 0.99
    units = {(d["analyte"], d["unit"]) for d in labs}
    assert {("calcium", "mg/dL"), ("vitamin_d_25oh", "ng/mL")} <= units
    for d in labs:
        value = to_canonical(d["analyte"], d["value"], d["unit"])
        assert UNITS[d["analyte"]].low <= value <= UNITS[d["analyte"]].high


@pytest.mark.parametrize(("day", "zone", "offset"), [
    (date(2025, 3, 29), "Europe/Madrid", "+01:00"),  # the Saturday before summer time
    (date(2025, 3, 30), "Europe/Madrid", "+02:00"),  # the change (at 02:00, before clinic)
    (date(2025, 10, 25), "Europe/Madrid", "+02:00"),
    (date(2025, 10, 26), "Europe/Madrid", "+01:00"),
    (date(2025, 3, 30), "Atlantic/Canary", "+01:00"),
    (date(2025, 7, 1), "America/Sao_Paulo", "-03:00"),
    (date(2025, 7, 1), "Asia/Kolkata", "+05:30"),
])
def test_timed_events_carry_the_offset_of_the_zone(day: date, zone: str, offset: str) -> None:
    assert patient_module._offset(day, ZoneInfo(zone)) == offset


def test_the_generator_writes_the_configured_zone() -> None:
    def timed(zone: str | None) -> set[str]:
        lines = generate_cohort(3, 7, date(2016, 12, 31),
                                zone=ZoneInfo(zone) if zone else None)
        return {x["occurred_at"][19:] for x in lines if len(x["occurred_at"]) > 10}

    assert timed(None) == timed("Europe/Madrid") == {"+01:00", "+02:00"}
    assert timed("America/Sao_Paulo") <= {"-02:00", "-03:00"}


def test_committed_examples_are_this_generators_output() -> None:
    fresh = io.BytesIO()
    write_cohort(fresh, 12, 7, date(2016, 12, 31))
    assert (REPO / "examples/cohort-12.jsonl").read_bytes() == fresh.getvalue()


# -- realism (500 patients, loose bounds) -------------------------------------------------------

def share(cohort: dict[str, list[Line]], test: Any) -> float:
    return sum(bool(test(ev)) for ev in cohort.values()) / len(cohort)


def test_sex_age_and_foci_follow_the_seed(cohort500: dict[str, list[Line]]) -> None:
    assert 0.70 <= share(cohort500, lambda ev: ev[0]["data"]["sex"] == "female") <= 0.95
    ages, foci = [], []
    for events in cohort500.values():
        birth = date.fromisoformat(events[0]["data"]["birth_date"])
        dx = next(e for e in events if e["type"] == "DiagnosisAssessed")
        ages.append((date.fromisoformat(dx["data"]["diagnosed_on"]) - birth).days / 365.25)
        scan = next(e for e in events if e["type"] == "ImagingRecorded"
                    and e["data"]["modality"] == "bone_scintigraphy")
        foci.append(len(scan["data"]["lesions"]))
    assert min(ages) >= 5.99 and max(ages) <= 14.01 and 10.5 <= mean(ages) <= 11.5
    assert min(foci) >= 1 and 2.5 <= mean(foci) <= 4.5


def test_treatment_shares_follow_the_seed(cohort500: dict[str, list[Line]]) -> None:
    assert share(cohort500, lambda ev: started(ev, "naproxen") or started(ev, "ibuprofen")) == 1
    assert 0.20 <= share(cohort500, lambda ev: started(ev, "pamidronate")) <= 0.45
    assert 0.35 <= share(cohort500, lambda ev: started(ev, "prednisone")) <= 0.65
    assert 0.45 <= share(cohort500, lambda ev: started(ev, "antibiotic")) <= 0.70
    assert 0.05 <= share(cohort500, lambda ev: started(ev, "adalimumab")
                         or started(ev, "methotrexate")) <= 0.25
    assert 0.45 <= share(cohort500, lambda ev: any(
        e["type"] == "BiopsyRecorded" for e in ev)) <= 0.75


def test_relapse_share_judged_from_the_visits(cohort500: dict[str, list[Line]]) -> None:
    assert 0.50 <= share(cohort500, has_relapse) <= 0.80


def test_relapse_judge_sees_the_one_month_boundary() -> None:
    def visit(on: str, symptomatic: bool, since: str | None = None) -> Line:
        data: dict[str, Any] = {"pain": symptomatic, "swelling": False,
                                "functional_limitation": False}
        if since:
            data["symptom_free_since"] = since
        return {"type": "VisitRecorded", "occurred_at": on, "data": data}

    base = [visit("2015-01-10", True), visit("2015-02-20", False, "2015-02-01")]
    assert not has_relapse([*base, visit("2015-03-01", True)])  # exactly b + 1 month
    assert has_relapse([*base, visit("2015-03-02", True)])  # the day after


def test_height_grows_and_weight_is_plausible(cohort500: dict[str, list[Line]]) -> None:
    for events in cohort500.values():
        heights = [e["data"]["height_cm"] for e in events
                   if e["type"] == "VisitRecorded" and "height_cm" in e["data"]]
        assert heights == sorted(heights)
        for e in events:
            if "weight_kg" in e["data"]:
                assert 15 <= e["data"]["weight_kg"] <= 110


def test_every_change_and_stop_names_an_earlier_course(cohort500: dict[str, list[Line]]) -> None:
    for events in cohort500.values():
        opened: set[str] = set()
        for e in events:
            if e["type"] == "MedicationStarted":
                assert e["data"]["course_id"] not in opened
                opened.add(e["data"]["course_id"])
            elif e["type"] in ("MedicationChanged", "MedicationStopped"):
                assert e["data"]["course_id"] in opened


# -- protocol (Tables 2 and 3) ------------------------------------------------------------------

def test_pamidronate_follows_table_3(cohort500: dict[str, list[Line]]) -> None:
    courses = 0
    for events in cohort500.values():
        doses = [(instant(e).date(), e["data"]) for e in events
                 if e["type"] == "InfusionAdministered"]
        if not doses:
            continue
        courses += 1
        (course,) = started(events, "pamidronate")
        assert course["data"]["regimen"] in ("monthly", "quarterly")
        first = doses[0][0]
        assert [d for d, _ in doses[:3]] == [first + timedelta(days=k) for k in range(3)]
        assert doses[0][1]["dose_mg"] / doses[0][1]["weight_kg"] <= 0.5
        for on, d in doses:
            assert d["dose_mg"] <= 60 and d["dose_mg"] / d["weight_kg"] <= 1.0
            window = sum(x["dose_mg"] / x["weight_kg"] for o, x in doses
                         if on - timedelta(days=364) <= o <= on)
            assert window <= 11.5
    assert courses >= 100


def test_baseline_labs_usually_complete_sometimes_not(cohort500: dict[str, list[Line]]) -> None:
    groups = [{"haemoglobin", "leukocytes", "platelets"}, {"phosphate"}, {"calcium"},
              {"urine_calcium_creatinine"}, {"vitamin_d_25oh"}, {"alt", "ast"}, {"creatinine"}]
    complete = total = 0
    for events in cohort500.values():
        doses = [e for e in events if e["type"] == "InfusionAdministered"]
        if not doses:
            continue
        first = instant(doses[0])
        got = {e["data"]["analyte"] for e in events if e["type"] == "LabResultRecorded"
               and first - timedelta(days=30) <= instant(e) < first}
        total += 1
        complete += all(g & got for g in groups)
    assert 0.80 <= complete / total <= 0.97


def test_high_urine_calcium_creatinine_is_usually_followed_by_a_renal_ultrasound(
        cohort500: dict[str, list[Line]]) -> None:
    high = scanned = 0
    for events in cohort500.values():
        for i, e in enumerate(events):
            if e["type"] == "LabResultRecorded" and e["data"]["analyte"] == \
                    "urine_calcium_creatinine" and to_canonical(
                        "urine_calcium_creatinine", e["data"]["value"], e["data"]["unit"]) > 2:
                high += 1
                scanned += any(x["type"] == "ImagingRecorded"
                               and x["data"]["modality"] == "renal_ultrasound"
                               for x in events[i + 1:])
    assert high >= 5 and 0.7 <= scanned / high <= 1.0


def test_prednisone_starts_within_1_to_2_mg_per_kg_per_day(
        cohort500: dict[str, list[Line]]) -> None:
    for events in cohort500.values():
        weights = [(day_of(e), e["data"]["weight_kg"]) for e in events
                   if e["type"] == "InfusionAdministered" or "weight_kg" in e["data"]]
        for course in started(events, "prednisone"):
            near = [w for d, w in weights if abs((d - day_of(course)).days) <= 120]
            if near and course["data"]["dose"] < 60:
                per_kg = course["data"]["dose"] / mean(near)
                assert 0.85 <= per_kg <= 2.2
