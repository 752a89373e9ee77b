"""Treatment ladder (clinical-rules §3, Table 2) at exact boundaries."""

from __future__ import annotations

from typing import Any

import pytest

from tests.unit.projection_builders import Log, d
from tracker.projections.treatment import TreatmentState, mg_per_kg_day, treatment
from tracker.protocol import DEFAULT_PROTOCOL, Protocol


def tx(log: Log, at: str, protocol: Protocol = DEFAULT_PROTOCOL) -> TreatmentState:
    return treatment(log.facts(at), d(at), protocol)


def enrolled() -> Log:
    log = Log()
    log.enrol("2015-01-01")
    return log


def kinds(state: TreatmentState) -> list[tuple[str, str, str]]:
    return [(f.kind, f.on.isoformat(), f.detail) for f in state.findings]


# -- courses and step -----------------------------------------------------------------------

def test_step_is_the_highest_open_ladder_step() -> None:
    log = enrolled()
    log.start("2015-01-10", "c1", "ibuprofen", dose=10, dose_unit="mg/kg/day")
    log.start("2015-01-20", "c2", "prednisone")
    log.start("2015-01-21", "c3", "calcium")
    assert tx(log, "2015-01-19").step == 1
    assert tx(log, "2015-01-20").step == 2
    log.start("2015-02-01", "c4", "pamidronate", regimen="quarterly")
    log.stop("2015-02-01", "c2", "completed")
    s = tx(log, "2015-02-01")
    assert (s.step, s.on_treatment) == (3, True)
    assert [c.course_id for c in s.open_courses] == ["c1", "c3", "c4"]
    assert [(c.course_id, c.stopped_on) for c in s.closed_courses] == [
        ("c2", d("2015-02-01"))]


@pytest.mark.parametrize("drug", ["adalimumab", "infliximab", "etanercept", "methotrexate"])
def test_biologics_and_methotrexate_are_step_four(drug: str) -> None:
    log = enrolled()
    log.start("2015-01-10", "c9", "pamidronate")
    log.start("2015-06-01", "c10", drug)
    assert tx(log, "2015-06-01").step == 4


@pytest.mark.parametrize("drug", ["calcium", "vitamin_d", "antibiotic", "paracetamol",
                                  "other"])
def test_non_cno_drugs_are_no_step(drug: str) -> None:
    log = enrolled()
    log.start("2015-01-10", "c1", drug)
    s = tx(log, "2015-01-10")
    assert (s.step, s.on_treatment) == (None, False)
    assert [c.course_id for c in s.open_courses] == ["c1"]


def test_change_updates_the_course_and_exposes_the_regimen() -> None:
    log = enrolled()
    log.start("2015-01-10", "p1", "pamidronate", regimen="monthly", dose=1,
              dose_unit="mg/kg")
    log.change("2015-04-01", "p1", regimen="quarterly")
    before, after = tx(log, "2015-03-31"), tx(log, "2015-04-01")
    assert before.open_courses[0].regimen == "monthly"
    course = after.course("p1")
    assert course is not None
    assert (course.regimen, course.dose, course.dose_unit) == ("quarterly", 1, "mg/kg")


def test_change_or_stop_of_unknown_course_is_ignored() -> None:
    log = enrolled()
    log.start("2015-01-10", "c1", "naproxen")
    log.change("2015-01-12", "zz", dose=5)
    log.stop("2015-01-13", "zz")
    s = tx(log, "2015-01-13")
    assert [c.course_id for c in s.open_courses] == ["c1"] and s.closed_courses == []


def test_as_json_is_the_contract_treatment_object() -> None:
    log = enrolled()
    log.start("2015-02-01", "c3", "pamidronate", regimen="quarterly")
    assert tx(log, "2015-03-01").as_json() == {
        "step": 3,
        "open_courses": [{"course_id": "c3", "drug": "pamidronate", "since": "2015-02-01"}],
        "corticoid_days": None, "bsa_m2": None, "anthropometry_stale": None,
        "deviations": [],
    }


# -- corticoids -------------------------------------------------------------------------------

@pytest.mark.parametrize(("at", "days"), [("2015-01-10", 0), ("2015-02-21", 42),
                                          ("2015-02-22", 43)])
def test_corticoid_days_since_start(at: str, days: int) -> None:
    log = enrolled()
    log.start("2015-01-10", "c2", "prednisone")
    assert tx(log, at).corticoid_days == days


def test_corticoid_days_null_without_an_open_course() -> None:
    log = enrolled()
    assert tx(log, "2015-01-10").corticoid_days is None
    log.start("2015-01-10", "c2", "prednisone")
    log.stop("2015-02-01", "c2")
    assert tx(log, "2015-01-31").corticoid_days == 21
    assert tx(log, "2015-02-01").corticoid_days is None


@pytest.mark.parametrize(("start", "at", "expected"), [
    ("2015-01-10", "2015-02-10", []),
    ("2015-01-10", "2015-02-11", [("corticoid_course_long", "2015-02-11", "warning")]),
    ("2015-01-31", "2015-02-28", []),
    ("2015-01-31", "2015-03-01", [("corticoid_course_long", "2015-03-01", "warning")]),
    ("2015-01-10", "2015-02-21", [("corticoid_course_long", "2015-02-11", "warning")]),
    ("2015-01-10", "2015-02-22", [("corticoid_course_long", "2015-02-11", "warning"),
                                  ("corticoid_course_long", "2015-02-22", "urgent")]),
])
def test_corticoid_course_over_one_month_and_over_six_weeks(
        start: str, at: str, expected: list[tuple[str, str, str]]) -> None:
    log = enrolled()
    started = log.start(start, "c2", "prednisone")
    s = tx(log, at)
    assert kinds(s) == expected
    assert all(f.event_id == started for f in s.findings)


def test_stopped_corticoid_course_raises_nothing() -> None:
    log = enrolled()
    log.start("2015-01-10", "c2", "prednisone")
    log.stop("2015-02-05", "c2", "completed")
    assert tx(log, "2015-03-30").findings == []


# -- NSAID review -------------------------------------------------------------------------------

@pytest.mark.parametrize(("start", "at", "due"), [
    ("2015-01-10", "2015-02-09", None), ("2015-01-10", "2015-02-10", "2015-02-10"),
    ("2015-01-31", "2015-02-27", None), ("2015-01-31", "2015-02-28", "2015-02-28")])
def test_nsaid_review_due_one_month_after_start(start: str, at: str, due: str | None) -> None:
    log = enrolled()
    log.start(start, "c1", "ibuprofen")
    assert kinds(tx(log, at)) == ([("nsaid_review_due", due, "info")] if due else [])


def test_nsaid_review_not_due_once_stopped() -> None:
    log = enrolled()
    log.start("2015-01-10", "c1", "naproxen")
    log.stop("2015-02-01", "c1")
    assert tx(log, "2015-03-01").findings == []


def test_nsaid_review_interval_is_configurable() -> None:
    log = enrolled()
    log.start("2015-01-10", "c1", "ibuprofen")
    assert tx(log, "2015-03-09", Protocol(nsaid_review_months=2)).findings == []
    assert kinds(tx(log, "2015-03-10", Protocol(nsaid_review_months=2))) == [
        ("nsaid_review_due", "2015-03-10", "info")]


# -- prednisone dose --------------------------------------------------------------------------

@pytest.mark.parametrize(("dose", "deviates"), [(0.99, True), (1.0, False), (2.0, False),
                                                (2.01, True)])
def test_prednisone_dose_in_mg_per_kg_day(dose: float, deviates: bool) -> None:
    log = enrolled()
    started = log.start("2015-01-10", "c2", "prednisone", dose=dose, dose_unit="mg/kg/day")
    devs = tx(log, "2015-01-10").deviations
    assert [(x.kind, x.event_id, x.on) for x in devs] == (
        [("corticoid_dose_out_of_range", started, d("2015-01-10"))] if deviates else [])


@pytest.mark.parametrize(("dose", "unit", "frequency", "deviates"), [
    (30, "mg/day", None, False), (29, "mg/day", None, True), (60, "mg/day", None, False),
    (61, "mg/day", None, True), (15, "mg", "twice daily", False), (30, "mg", "daily", False),
    (14, "mg", "bid", True), (0.5, "mg/kg", "twice_daily", False)])
def test_prednisone_dose_converted_with_the_latest_weight(
        dose: float, unit: str, frequency: str | None, deviates: bool) -> None:
    log = enrolled()
    log.visit("2015-01-05", weight_kg=30.0)
    extra = {"frequency": frequency} if frequency else {}
    log.start("2015-01-10", "c2", "prednisone", dose=dose, dose_unit=unit, **extra)
    assert bool(tx(log, "2015-01-10").deviations) is deviates


def test_unconvertible_dose_is_not_checked_but_explained() -> None:
    log = enrolled()
    started = log.start("2015-01-10", "c2", "prednisone", dose=5, dose_unit="mg/day")
    s = tx(log, "2015-01-10")
    assert s.deviations == []
    [text] = [e.text for e in s.explanations if e.subject == f"dose:{started}"]
    assert "not checked" in text


def test_dose_uses_the_weight_known_at_the_event_including_infusions() -> None:
    log = enrolled()
    log.visit("2015-01-05", weight_kg=30.0)
    log.infusion("2015-01-08", dose_mg=15, weight_kg=40.0)
    log.start("2015-01-10", "c2", "prednisone", dose=40, dose_unit="mg/day")  # 1.0 at 40 kg
    log.visit("2015-01-12", weight_kg=50.0)  # later weight: no retroactive deviation
    assert tx(log, "2015-01-12").deviations == []


@pytest.mark.parametrize(("change_on", "dose", "deviates"), [
    ("2015-01-23", 0.5, True),    # day 13: still the full-dose fortnight
    ("2015-01-24", 0.5, False),   # day 14: taper
    ("2015-02-01", 2.5, True),    # above max even when tapering
])
def test_taper_after_two_weeks(change_on: str, dose: float, deviates: bool) -> None:
    log = enrolled()
    log.start("2015-01-10", "c2", "prednisone", dose=1.5, dose_unit="mg/kg/day")
    changed = log.change(change_on, "c2", dose=dose)
    devs = tx(log, change_on).deviations
    assert [x.event_id for x in devs] == ([changed] if deviates else [])


def test_dose_range_is_configurable() -> None:
    log = enrolled()
    log.start("2015-01-10", "c2", "prednisone", dose=0.8, dose_unit="mg/kg/day")
    assert tx(log, "2015-01-10", Protocol(prednisone_min_mg_per_kg_day=0.8)).deviations == []


def test_mg_per_kg_day_conversion() -> None:
    assert mg_per_kg_day(20, "mg", "TID", 30.0) == 2.0
    assert mg_per_kg_day(20, "mg", "weekly", 30.0) is None
    assert mg_per_kg_day(20, "mg", None, 30.0) is None
    assert mg_per_kg_day(1.2, "mg / kg / day", None, None) == 1.2
    assert mg_per_kg_day(20, "tablets", "daily", 30.0) is None


# -- body-surface area ---------------------------------------------------------------------------

def test_mosteller_bsa_from_latest_height_and_weight() -> None:
    log = enrolled()
    log.visit("2015-01-05", weight_kg=30.0, height_cm=130.0)
    log.visit("2015-02-01", weight_kg=40.5, height_cm=150.0)
    s = tx(log, "2015-02-01")
    assert s.bsa_m2 == 1.299  # sqrt(150 * 40.5 / 3600) = sqrt(1.6875)
    assert s.anthropometry_stale is False


def test_infusion_weight_counts_as_latest_weight() -> None:
    log = enrolled()
    log.visit("2015-01-05", weight_kg=30.0, height_cm=144.0)
    log.infusion("2015-02-01", dose_mg=25, weight_kg=25.0)
    assert tx(log, "2015-02-01").bsa_m2 == 1.0  # sqrt(144 * 25 / 3600)


@pytest.mark.parametrize("old", ["height_cm", "weight_kg"])
@pytest.mark.parametrize(("at", "stale"), [("2015-04-01", False), ("2015-04-02", True)])
def test_anthropometry_older_than_90_days_is_stale(old: str, at: str, stale: bool) -> None:
    log = enrolled()
    recent = "weight_kg" if old == "height_cm" else "height_cm"
    first: dict[str, Any] = {old: 40.0}
    then: dict[str, Any] = {recent: 140.0}
    log.visit("2015-01-01", **first)   # 90 days before 1 April 2015
    log.visit("2015-03-01", **then)
    s = tx(log, at)
    assert s.anthropometry_stale is stale
    assert s.as_json()["anthropometry_stale"] is stale


def test_no_bsa_without_height() -> None:
    log = enrolled()
    log.visit("2015-01-05", weight_kg=30.0)
    s = tx(log, "2015-01-05")
    assert (s.bsa_m2, s.anthropometry_stale) == (None, None)
