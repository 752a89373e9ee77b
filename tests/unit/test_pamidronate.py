"""Pamidronate exposure (clinical-rules.md §4): limits, rolling year, cycles, next dose."""

from __future__ import annotations

from datetime import date, timedelta
from fractions import Fraction

import pytest

from tests.unit.pamidronate_builders import (
    adverse,
    changed,
    comorbidity,
    cycle,
    induction,
    infusion,
    ordered,
    panel,
    procedure,
    quarterly_first_year,
    started,
    stopped,
    visit,
)
from tracker.facts import Fact
from tracker.projections.pamidronate import (
    PamidronateExposure,
    cap_check,
    first_fit,
    number_doses,
    pamidronate_exposure,
)
from tracker.protocol import DEFAULT_PROTOCOL, Protocol

D = date.fromisoformat


def run(facts: list[Fact], at: str, protocol: Protocol = DEFAULT_PROTOCOL) -> PamidronateExposure:
    return pamidronate_exposure(ordered(facts), D(at), protocol)


def kinds(exp: PamidronateExposure, event_id: str | None = None) -> list[str]:
    return [d.kind for d in exp.deviations
            if event_id is None or d.event_id == event_id]


def with_baseline(first: str, *facts: Fact) -> list[Fact]:
    """A course with baseline labs the day before ``first``."""
    return [*panel(D(first) - timedelta(days=1)), *facts]


# ------------------------------------------------------------ per-dose limits


@pytest.mark.parametrize(("dose_mg", "deviates"), [
    (9.98, False),   # 0.499 mg/kg: just under the 0.5 limit
    (10.0, False),   # 0.5 mg/kg: on the limit
    (10.5, False),   # 0.525 mg/kg: on the limit + 5% tolerance
    (10.52, True),   # 0.526 mg/kg: just over
])
def test_first_ever_dose_limit_with_tolerance(dose_mg: float, deviates: bool) -> None:
    first = infusion("2015-01-10", dose_mg, 20.0, event_id="first")
    exp = run(with_baseline("2015-01-10", started("2015-01-10"), first), "2015-01-10")
    assert exp.doses[0].mg_per_kg == pytest.approx(dose_mg / 20.0)
    assert ("first_dose_above_protocol" in kinds(exp, "first")) is deviates
    assert "dose_above_1_mg_per_kg" not in kinds(exp)


def test_first_dose_limit_applies_only_to_the_first_ever_dose() -> None:
    facts = with_baseline("2015-01-10", infusion("2015-01-10", 10.0, 20.0),
                          infusion("2015-01-11", 20.0, 20.0, event_id="second"))
    assert kinds(run(facts, "2015-01-11")) == []


@pytest.mark.parametrize(("dose_mg", "deviates"), [
    (19.98, False),  # 0.999 mg/kg
    (20.0, False),   # 1 mg/kg
    (21.0, False),   # 1.05 mg/kg: limit + 5%
    (21.02, True),   # 1.051 mg/kg
])
def test_one_mg_per_kg_limit_with_tolerance(dose_mg: float, deviates: bool) -> None:
    facts = with_baseline("2015-01-10", infusion("2015-01-10", 10.0, 20.0),
                          infusion("2015-01-11", dose_mg, 20.0, event_id="second"))
    exp = run(facts, "2015-01-11")
    assert ("dose_above_1_mg_per_kg" in kinds(exp, "second")) is deviates
    assert "first_dose_above_protocol" not in kinds(exp)


@pytest.mark.parametrize(("dose_mg", "deviates"), [
    (59.9, False), (60.0, False), (60.1, True),
    (63.0, True),  # the 5% tolerance is for per-kg doses only [reading]
])
def test_sixty_mg_limit_is_absolute(dose_mg: float, deviates: bool) -> None:
    facts = with_baseline("2015-01-10", infusion("2015-01-10", 35.0, 70.0),
                          infusion("2015-01-11", dose_mg, 70.0, event_id="second"))
    exp = run(facts, "2015-01-11")
    assert kinds(exp, "second") == (["dose_above_60_mg"] if deviates else [])


def test_heavy_child_dosed_at_1_mg_per_kg_still_deviates_above_60_mg() -> None:
    facts = with_baseline("2015-01-10", infusion("2015-01-10", 40.0, 80.0),
                          infusion("2015-01-11", 80.0, 80.0, event_id="second"))
    exp = run(facts, "2015-01-11")
    assert kinds(exp, "second") == ["dose_above_60_mg"]
    assert "80 mg" in exp.deviations[0].detail


def test_other_drugs_are_not_pamidronate_doses_but_give_a_weight() -> None:
    facts = with_baseline("2015-01-10", started("2015-01-10", regimen="monthly"),
                          *induction("2015-01-10", 40.0),
                          infusion("2015-02-01", 300.0, 70.0, drug="infliximab"))
    exp = run(facts, "2015-02-05")
    assert len(exp.doses) == 3
    assert exp.lifetime_mg == 100.0
    assert kinds(exp) == []
    assert exp.planned_mg_per_kg == pytest.approx(60 / 70)  # latest weight 70 kg


# ------------------------------------------------------------ rolling year


def test_rolling_window_is_365_days_ending_on_at() -> None:
    facts = with_baseline("2015-01-01", infusion("2015-01-01", 15.0, 30.0))
    assert run(facts, "2015-12-31").rolling_year_mg_per_kg == 0.5  # 364 days before: in
    exp = run(facts, "2016-01-01")                                  # 365 days before: out
    assert exp.rolling_year_mg_per_kg == 0.0
    assert exp.remaining_mg_per_kg == 11.5
    assert exp.lifetime_mg_per_kg == 0.5


def test_rolling_window_counts_days_across_a_leap_day() -> None:
    facts = with_baseline("2015-03-01", infusion("2015-03-01", 15.0, 30.0))
    assert run(facts, "2016-02-28").rolling_year_mg_per_kg == 0.5
    assert run(facts, "2016-02-29").rolling_year_mg_per_kg == 0.0


def test_quarterly_first_year_reaches_the_cap_exactly_without_deviation() -> None:
    facts = [*panel("2014-12-31"), *quarterly_first_year()]
    exp = run(facts, "2015-10-03")
    assert (len(exp.doses), exp.cycles) == (12, 4)
    assert exp.rolling_year_mg_per_kg == 11.5
    assert exp.lifetime_mg_per_kg == 11.5
    assert exp.remaining_mg_per_kg == 0.0
    assert exp.deviations == []
    # exact even with no tolerance at all
    strict = DEFAULT_PROTOCOL.model_copy(update={"cap_tolerance_mg_per_kg": 0.0})
    assert run(facts, "2015-10-03", strict).deviations == []


def test_sums_are_exact_where_floats_are_not() -> None:
    # 3/30 + 6/30 mg/kg is 0.30000000000000004 in floats, exactly 0.3 here
    protocol = DEFAULT_PROTOCOL.model_copy(
        update={"annual_cap_mg_per_kg": 0.3, "cap_tolerance_mg_per_kg": 0.0})
    facts = with_baseline("2015-01-01", infusion("2015-01-01", 3.0, 30.0),
                          infusion("2015-01-02", 6.0, 30.0))
    exp = run(facts, "2015-01-02", protocol)
    assert "annual_cap_exceeded" not in kinds(exp)
    assert exp.remaining_mg_per_kg == 0.0
    over = [*facts, infusion("2015-01-03", 0.03, 30.0, event_id="over")]
    assert kinds(run(over, "2015-01-03", protocol), "over") == ["annual_cap_exceeded"]


def test_annual_cap_tolerance_boundary() -> None:
    base = [*panel("2014-12-31"), *quarterly_first_year()]
    # one more dose in the window: 11.51 is within the 0.01 tolerance, 11.52 is not
    at_tolerance = infusion("2015-10-20", 0.3, 30.0, event_id="x")    # +0.01
    over = infusion("2015-10-20", 0.6, 30.0, event_id="y")            # +0.02
    assert kinds(run([*base, at_tolerance], "2015-10-20"), "x") == []
    assert kinds(run([*base, over], "2015-10-20"), "y") == ["annual_cap_exceeded"]
    assert run([*base, over], "2015-10-20").remaining_mg_per_kg == 0.0


def test_annual_cap_deviation_names_the_dose_that_crosses_it() -> None:
    base = [*panel("2014-12-31"), *quarterly_first_year()]
    morning = infusion("2015-10-20", 0.3, 30.0, hour=9, event_id="morning")   # 11.51
    evening = infusion("2015-10-20", 0.3, 30.0, hour=17, event_id="evening")  # 11.52
    exp = run([*base, evening, morning], "2015-10-20")
    assert [(d.kind, d.event_id) for d in exp.deviations] == [
        ("annual_cap_exceeded", "evening")]


def test_fifth_quarterly_cycle_warns_before_the_dose_that_crosses_the_cap() -> None:
    facts = [*panel("2014-12-31"), *quarterly_first_year()]
    before = run(facts, "2015-12-31")
    assert before.next_due == D("2016-01-01")
    # on 1 Jan 2016 the window still holds 2-3 Jan 2015 (2) + 9 = 11, +1 planned = 12
    assert before.next_dose_exceeds_cap is True
    assert before.next_dose_fits_on == D("2016-01-02")  # 2 Jan 2015 has left the window
    assert before.deviations == []

    # given on its due date anyway: the deviation names that dose
    on_time = run([*facts, infusion("2016-01-01", 30.0, event_id="c5d1")], "2016-01-01")
    assert kinds(on_time, "c5d1") == ["annual_cap_exceeded"]

    # the cycle moved to 2-3 Jan fits, but its third day would bring 12 mg/kg
    moved = [*facts, *cycle("2016-01-02", doses=1)]
    assert run(moved, "2016-01-02").next_dose_exceeds_cap is False
    moved = [*facts, *cycle("2016-01-02", doses=2)]
    exp = run(moved, "2016-01-03")
    assert exp.deviations == []
    assert exp.next_due == D("2016-01-04")
    assert exp.next_dose_exceeds_cap is True
    # 1 Apr 2015 leaves the window 365 days later: 31 Mar 2016 (leap year)
    assert exp.next_dose_fits_on == D("2016-03-31")


def test_cap_check_and_first_fit_helpers() -> None:
    doses = number_doses([], DEFAULT_PROTOCOL)
    check = cap_check(doses, 1.0, D("2016-01-01"), DEFAULT_PROTOCOL)
    assert (check.rolling_mg_per_kg, check.exceeds) == (Fraction(0), False)
    assert check.window_start == D("2015-01-02")
    assert check.limit_mg_per_kg == Fraction("11.51")
    assert first_fit(doses, 12.0, D("2016-01-01"), DEFAULT_PROTOCOL) is None
    assert first_fit(doses, 11.5, D("2016-01-01"), DEFAULT_PROTOCOL) == D("2016-01-01")


# ------------------------------------------------------------ cycles and next dose


@pytest.mark.parametrize(("second", "cycles"), [("2015-01-04", 1), ("2015-01-05", 2)])
def test_cycle_gap_of_three_days_continues_four_starts_a_new_cycle(
        second: str, cycles: int) -> None:
    facts = with_baseline("2015-01-01", infusion("2015-01-01", 15.0),
                          infusion(second, 30.0))
    exp = run(facts, second)
    assert exp.cycles == cycles
    assert [d.cycle for d in exp.doses] == [1, cycles]
    assert [d.number for d in exp.doses] == [1, 2]


def test_next_dose_inside_the_first_cycle_is_the_next_day() -> None:
    facts = with_baseline("2015-01-10", started("2015-01-10", regimen="monthly"),
                          infusion("2015-01-10", 15.0))
    exp = run(facts, "2015-01-10")
    assert exp.next_due == D("2015-01-11")
    assert exp.next_dose_exceeds_cap is False
    assert exp.next_dose_fits_on == D("2015-01-11")
    assert exp.planned_mg_per_kg == 1.0


@pytest.mark.parametrize(("first", "expected"), [
    ("2015-01-29", "2015-02-28"),  # last dose 31 Jan + 1 month, clamped
    ("2016-01-29", "2016-02-29"),  # leap year
    ("2015-03-01", "2015-04-03"),
])
def test_monthly_next_due_is_last_dose_plus_one_month(first: str, expected: str) -> None:
    facts = with_baseline(first, started(first, regimen="monthly"), *induction(first))
    exp = run(facts, expected)
    assert exp.next_due == D(expected)
    assert exp.regimen == "monthly"


def test_monthly_after_a_clamped_month() -> None:
    facts = with_baseline("2015-01-29", started("2015-01-29", regimen="monthly"),
                          *induction("2015-01-29"), infusion("2015-02-28", 30.0))
    exp = run(facts, "2015-03-01")
    assert (exp.cycles, exp.next_due) == (2, D("2015-03-28"))


def test_quarterly_next_due_from_first_day_of_last_cycle() -> None:
    facts = [*panel("2014-12-31"), *quarterly_first_year()[:7]]  # induction + 1-3 Apr
    exp = run(facts, "2015-04-03")
    assert exp.next_due == D("2015-07-01")
    inside = run([*panel("2014-12-31"), *quarterly_first_year()[:5]], "2015-04-01")
    assert inside.next_due == D("2015-04-02")  # day 2 of the quarterly cycle


def test_regimen_changed_during_the_course() -> None:
    facts = with_baseline("2015-01-01", started("2015-01-01", regimen="monthly"),
                          *induction("2015-01-01"), changed("2015-01-20", regimen="quarterly"))
    exp = run(facts, "2015-01-20")
    assert exp.regimen == "quarterly"
    assert exp.next_due == D("2015-04-01")


def test_course_without_regimen_has_no_schedule_after_induction() -> None:
    facts = with_baseline("2015-01-01", started("2015-01-01"), *induction("2015-01-01"))
    exp = run(facts, "2015-01-03")
    assert (exp.regimen, exp.course_open, exp.next_due) == (None, True, None)
    assert exp.next_dose_exceeds_cap is None
    assert exp.next_dose_fits_on is None


def test_course_started_without_dose_is_due_on_its_start() -> None:
    exp = run([started("2015-01-10", regimen="quarterly")], "2015-01-12")
    assert exp.next_due == D("2015-01-10")
    assert exp.planned_mg_per_kg == 0.5
    assert (len(exp.doses), exp.cycles, exp.course_open) == (0, 0, True)


def test_stopped_course_has_no_next_dose() -> None:
    facts = with_baseline("2015-01-01", started("2015-01-01", regimen="monthly"),
                          *induction("2015-01-01"), stopped("2015-01-20"))
    exp = run(facts, "2015-01-20")
    assert (exp.course_open, exp.next_due, exp.next_dose_exceeds_cap) == (False, None, None)
    assert run(facts, "2015-01-19").next_due == D("2015-02-03")  # before the stop


def test_nothing_recorded() -> None:
    exp = run([visit("2015-01-01", weight_kg=30.0)], "2015-01-01")
    assert exp.as_json() == {
        "doses": 0, "cycles": 0, "lifetime_mg": 0.0, "lifetime_mg_per_kg": 0.0,
        "rolling_year_mg_per_kg": 0.0, "annual_cap_mg_per_kg": 11.5,
        "remaining_mg_per_kg": 11.5, "next_due": None, "next_dose_exceeds_cap": None,
        "next_dose_fits_on": None, "deviations": []}


def test_planned_dose_capped_at_60_mg_at_the_latest_weight() -> None:
    facts = with_baseline("2015-01-01", started("2015-01-01", regimen="monthly"),
                          *induction("2015-01-01", 50.0), visit("2015-01-20", weight_kg=80.0))
    exp = run(facts, "2015-01-20")
    assert exp.planned_mg_per_kg == pytest.approx(0.75)


def test_facts_after_at_are_ignored() -> None:
    facts = with_baseline("2015-01-01", *induction("2015-01-01"))
    assert len(run(facts, "2015-01-02").doses) == 2


# ------------------------------------------------------------ contraindications, surgery, labs


@pytest.mark.parametrize(("at", "flagged"), [
    ("2015-01-30", False),  # due 1 Feb: two days ahead
    ("2015-01-31", True),   # the day before the due date
    ("2015-02-01", True),   # on it
    ("2015-02-10", True),   # overdue
])
def test_contraindication_turns_a_due_dose_into_a_finding(at: str, flagged: bool) -> None:
    facts = with_baseline("2014-12-30", started("2014-12-30", regimen="monthly"),
                          *induction("2014-12-30"),
                          comorbidity("2015-01-15", "severe_kidney_failure"))
    exp = run(facts, at)
    assert exp.next_due == D("2015-02-01")
    found = [f.kind for f in exp.findings]
    assert found == (["pamidronate_contraindicated"] if flagged else [])


def test_enterocolitis_counts_diarrhoea_does_not() -> None:
    base = with_baseline("2015-01-01", started("2015-01-01", regimen="monthly"),
                         infusion("2015-01-01", 15.0))
    assert run([*base, adverse("2015-01-01", "diarrhoea")], "2015-01-01").findings == []
    exp = run([*base, comorbidity("2015-01-01", "enterocolitis")], "2015-01-01")
    assert [f.detail for f in exp.findings] == ["contraindicated: review (enterocolitis)"]
    stopped_course = [*base, comorbidity("2015-01-01", "enterocolitis"), stopped("2015-01-01")]
    assert run(stopped_course, "2015-01-01").findings == []


def test_bone_surgery_after_the_first_cycle_is_a_deviation() -> None:
    base = with_baseline("2015-01-01", *induction("2015-01-01"))
    same_day = procedure("2015-01-03")
    assert kinds(run([*base, same_day], "2015-01-10")) == []
    after = procedure("2015-01-04")
    exp = run([*base, after], "2015-01-10")
    assert [(d.kind, d.event_id) for d in exp.deviations] == [
        ("bone_surgery_after_induction", after.event_id)]
    assert kinds(run([*base, procedure("2015-01-04", "other")], "2015-01-10")) == []


@pytest.mark.parametrize(("labs_on", "missing"), [
    ("2014-12-02", []),   # 30 days before the first dose: inside
    ("2014-12-01", ["haemogram", "ions", "urine_calcium_creatinine", "vitamin_d", "liver",
                    "kidney"]),  # 31 days before: outside
])
def test_baseline_labs_window_is_30_days(labs_on: str, missing: list[str]) -> None:
    first = infusion("2015-01-01", 15.0, event_id="first")
    exp = run([*panel(labs_on), first], "2015-01-01")
    if missing:
        assert kinds(exp) == ["baseline_labs_missing"]
        assert exp.deviations[0].event_id == "first"
        assert ", ".join(missing) in exp.deviations[0].detail
    else:
        assert kinds(exp) == []


def test_baseline_labs_missing_names_the_absent_group() -> None:
    first = infusion("2015-01-01", 15.0, event_id="first")
    exp = run([*panel("2014-12-20", without=["alt"]), first], "2015-01-01")
    assert [(d.kind, d.event_id) for d in exp.deviations] == [
        ("baseline_labs_missing", "first")]
    assert "without liver in" in exp.deviations[0].detail
    # labs drawn the same day but after the infusion are not baseline
    later = run([*panel("2015-01-01", hour=12), first], "2015-01-01")
    assert kinds(later) == ["baseline_labs_missing"]


# ------------------------------------------------------------ contract shape


def test_as_json_matches_the_contract() -> None:
    facts = with_baseline("2015-01-01", started("2015-01-01", regimen="monthly"),
                          *induction("2015-01-01", 30.2),
                          infusion("2015-02-03", 30.2, 30.2),
                          infusion("2015-03-03", 64.0, 64.0, event_id="big"))
    out = run(facts, "2015-03-10").as_json()
    assert out == {
        "doses": 5, "cycles": 3, "lifetime_mg": 169.7, "lifetime_mg_per_kg": 4.5,
        "rolling_year_mg_per_kg": 4.5, "annual_cap_mg_per_kg": 11.5,
        "remaining_mg_per_kg": 7.0, "next_due": "2015-04-03",
        "next_dose_exceeds_cap": False, "next_dose_fits_on": "2015-04-03",
        "deviations": [{"event_id": "big", "kind": "dose_above_60_mg",
                        "detail": "dose 64 mg; maximum 60 mg"}],
    }


@pytest.mark.parametrize(("visit_hour", "planned"), [
    (9, 1.0),    # a visit weighed before the last infusion that day: the infusion's 50 kg
    (11, 0.75),  # weighed after it: the visit's 80 kg (60 mg cap / 80 kg)
])
def test_the_latest_weight_is_the_latest_in_clinical_time_visit_or_infusion(
        visit_hour: int, planned: float) -> None:
    """docs/readings.md: "latest" is by clinical time across visits and infusions; on one
    day the later entry wins (a bare-date visit is at local midnight, before any dose)."""
    facts = with_baseline("2015-01-01", started("2015-01-01", regimen="monthly"),
                          *induction("2015-01-01", 50.0),
                          visit("2015-01-03", weight_kg=80.0, hour=visit_hour))
    exp = run(facts, "2015-01-03")
    assert exp.planned_mg_per_kg == pytest.approx(planned)
