"""Monitoring items and immediate findings (clinical-rules.md §5)."""

from __future__ import annotations

from datetime import date

import pytest

from tests.unit.pamidronate_builders import (
    adverse,
    induction,
    infusion,
    lab,
    ordered,
    panel,
    renal_ultrasound,
    started,
    stopped,
)
from tracker.facts import Fact
from tracker.projections.monitoring import (
    LAB_GROUPS,
    MonitoringItem,
    MonitoringResult,
    groups_present,
    missing_groups,
    monitoring,
)
from tracker.protocol import DEFAULT_PROTOCOL

D = date.fromisoformat
ALL = list(LAB_GROUPS)
POST = ["haemogram", "ions", "urine_calcium_creatinine", "vitamin_d", "kidney"]


def run(facts: list[Fact], at: str) -> MonitoringResult:
    return monitoring(ordered(facts), D(at), DEFAULT_PROTOCOL)


def item(result: MonitoringResult, name: str) -> MonitoringItem:
    found = [i for i in result.items if i.item == name]
    assert len(found) == 1, result.items
    return found[0]


def names(result: MonitoringResult) -> list[str]:
    return [i.item for i in result.items]


# ------------------------------------------------------------ lab groups


def test_groups_and_their_analytes() -> None:
    assert groups_present(["platelets"]) == {"haemogram"}
    assert groups_present(["phosphate"]) == set()         # ions need phosphate AND calcium
    assert groups_present(["calcium"]) == set()
    assert groups_present(["phosphate", "ionized_calcium"]) == {"ions"}
    assert groups_present(["ast", "creatinine", "vitamin_d_25oh"]) == {
        "liver", "kidney", "vitamin_d"}
    assert groups_present(["crp", "esr", "magnesium", "pth"]) == set()
    assert missing_groups(["leukocytes", "creatinine"]) == [
        "ions", "urine_calcium_creatinine", "vitamin_d", "liver"]


# ------------------------------------------------------------ baseline labs


def test_no_pamidronate_no_items() -> None:
    assert run([*panel("2015-01-01"), started("2015-01-01", drug="ibuprofen")],
               "2015-01-02").items == []


def test_baseline_due_from_course_start_until_labs_collected() -> None:
    course = started("2015-01-10", regimen="monthly")
    due = item(run([course], "2015-01-10"), "baseline_labs")
    assert (due.status, due.due_on, due.overdue_on, due.missing) == (
        "due", D("2015-01-10"), None, ALL)
    partial = item(run([course, *panel("2015-01-11", without=["creatinine"])], "2015-01-11"),
                   "baseline_labs")
    assert (partial.status, partial.missing) == ("due", ["kidney"])
    done = item(run([course, *panel("2015-01-11")], "2015-01-11"), "baseline_labs")
    assert (done.status, done.missing) == ("satisfied", [])
    # before the first dose, the labs must be within the 30 days ending today
    assert item(run([course, *panel("2015-01-11")], "2015-02-10"),
                "baseline_labs").status == "satisfied"
    assert item(run([course, *panel("2015-01-11")], "2015-02-11"),
                "baseline_labs").status == "due"


@pytest.mark.parametrize(("labs_on", "status"), [
    ("2014-12-02", "satisfied"),  # 30 days before the first dose
    ("2014-12-01", "overdue"),    # 31 days before
])
def test_baseline_window_before_the_first_dose(labs_on: str, status: str) -> None:
    facts = [started("2014-11-20"), *panel(labs_on), infusion("2015-01-01", 15.0)]
    got = item(run(facts, "2015-01-05"), "baseline_labs")
    assert got.status == status
    assert got.due_on == D("2014-11-20")
    assert got.missing == ([] if status == "satisfied" else ALL)


def test_first_dose_without_baseline_stays_overdue() -> None:
    dose = infusion("2015-01-01", 15.0, event_id="d1")
    late_labs = panel("2015-01-01", hour=12)  # after the infusion: not a baseline
    got = item(run([dose, *late_labs], "2015-06-01"), "baseline_labs")
    assert (got.status, got.due_on, got.overdue_on) == ("overdue", D("2015-01-01"),
                                                        D("2015-01-01"))
    assert got.cause_event_ids == ["d1"]


def test_course_stopped_before_any_dose_drops_baseline() -> None:
    facts = [started("2015-01-01"), stopped("2015-01-05")]
    assert run(facts, "2015-01-04").items != []
    assert run(facts, "2015-01-05").items == []


# ------------------------------------------------------------ post-dose labs


def induction_with_baseline() -> list[Fact]:
    return [started("2015-01-01", regimen="quarterly"), *panel("2014-12-31"),
            *induction("2015-01-01")]  # doses 2 and 3 on 2 and 3 Jan


@pytest.mark.parametrize(("at", "status"), [
    ("2015-01-02", "not_due"),   # the dose day
    ("2015-01-03", "due"),       # from the day after
    ("2015-01-08", "due"),       # dose + 6
    ("2015-01-09", "overdue"),   # dose + 7
])
def test_post_dose_2_labs_timeline(at: str, status: str) -> None:
    got = item(run(induction_with_baseline(), at), "post_dose_2_labs")
    assert got.status == status
    assert (got.due_on, got.overdue_on) == (D("2015-01-03"), D("2015-01-09"))
    assert got.missing == POST  # liver is baseline only


def test_post_dose_items_appear_with_their_dose() -> None:
    assert names(run(induction_with_baseline(), "2015-01-01")) == ["baseline_labs"]
    assert names(run(induction_with_baseline(), "2015-01-03")) == [
        "baseline_labs", "post_dose_2_labs", "post_dose_3_labs"]
    baseline = item(run(induction_with_baseline(), "2015-01-03"), "baseline_labs")
    assert baseline.status == "satisfied"


def test_post_dose_labs_satisfied_after_the_dose_within_14_days() -> None:
    facts = [*induction_with_baseline(), *panel("2015-01-05", without=["alt"])]
    assert item(run(facts, "2015-01-05"), "post_dose_2_labs").status == "satisfied"
    assert item(run(facts, "2015-01-05"), "post_dose_3_labs").status == "satisfied"
    partial = [*induction_with_baseline(), *panel("2015-01-05", without=["vitamin_d_25oh"])]
    got = item(run(partial, "2015-01-10"), "post_dose_3_labs")
    assert (got.status, got.missing) == ("overdue", ["vitamin_d"])


@pytest.mark.parametrize(("labs_on", "status"), [
    ("2015-01-16", "satisfied"),  # dose 2 (2 Jan) + 14
    ("2015-01-17", "overdue"),    # + 15: too late
])
def test_post_dose_window_is_14_days(labs_on: str, status: str) -> None:
    facts = [*induction_with_baseline(), *panel(labs_on)]
    assert item(run(facts, "2015-01-20"), "post_dose_2_labs").status == status


def test_post_dose_labs_must_follow_the_infusion() -> None:
    # labs at 08:00 on 3 Jan: after dose 2 (2 Jan), before dose 3 (3 Jan 10:00)
    facts = [*induction_with_baseline(), *panel("2015-01-03", hour=8)]
    result = run(facts, "2015-01-12")
    assert item(result, "post_dose_2_labs").status == "satisfied"
    assert item(result, "post_dose_3_labs").status == "overdue"
    after = [*induction_with_baseline(), *panel("2015-01-03", hour=14)]
    assert item(run(after, "2015-01-03"), "post_dose_3_labs").status == "satisfied"


def test_post_dose_labs_at_the_same_instant_as_the_dose_do_not_count() -> None:
    # date-only entries on the dose day cannot show the specimen followed the infusion
    facts = [*induction_with_baseline(), *panel("2015-01-02", hour=10)]
    assert item(run(facts, "2015-01-02"), "post_dose_2_labs").status == "not_due"
    assert item(run(facts, "2015-01-09"), "post_dose_2_labs").status == "overdue"


# ------------------------------------------------------------ renal ultrasound


@pytest.mark.parametrize(("value", "unit", "triggers"), [
    (2.0, "mmol/mmol", False),   # not above 2
    (2.01, "mmol/mmol", True),
    (0.7, "mg/mg", False),       # 1.975 mmol/mmol
    (0.71, "mg/mg", True),       # 2.004 mmol/mmol
])
def test_urine_ca_cr_threshold_in_mmol_per_mmol(value: float, unit: str,
                                                triggers: bool) -> None:
    result = run([lab("2015-03-01", "urine_calcium_creatinine", value, unit)], "2015-03-01")
    assert ("renal_ultrasound" in names(result)) is triggers


@pytest.mark.parametrize(("at", "status"), [
    ("2015-03-01", "due"), ("2015-03-30", "due"), ("2015-03-31", "overdue"),
])
def test_renal_ultrasound_overdue_on_result_plus_30(at: str, status: str) -> None:
    high = lab("2015-03-01", "urine_calcium_creatinine", 2.5, event_id="high")
    got = item(run([high], at), "renal_ultrasound")
    assert (got.status, got.due_on, got.overdue_on) == (status, D("2015-03-01"),
                                                        D("2015-03-31"))
    assert (got.missing, got.cause_event_ids) == (["renal_ultrasound"], ["high"])


def test_renal_ultrasound_on_or_after_the_result_satisfies() -> None:
    high = lab("2015-03-01", "urine_calcium_creatinine", 2.5, hour=12)
    before = renal_ultrasound("2015-02-28")
    assert item(run([before, high], "2015-03-02"), "renal_ultrasound").status == "due"
    same_day_earlier = renal_ultrasound("2015-03-01", hour=9)
    got = item(run([same_day_earlier, high], "2015-03-02"), "renal_ultrasound")
    assert (got.status, got.missing) == ("satisfied", [])


def test_one_renal_item_per_episode() -> None:
    facts = [lab("2015-03-01", "urine_calcium_creatinine", 2.5, event_id="a"),
             lab("2015-03-10", "urine_calcium_creatinine", 2.8, event_id="b"),
             renal_ultrasound("2015-03-20"),
             lab("2015-06-01", "urine_calcium_creatinine", 2.6, event_id="c")]
    items = [i for i in run(facts, "2015-06-02").items if i.item == "renal_ultrasound"]
    assert [(i.status, i.due_on) for i in items] == [
        ("satisfied", D("2015-03-01")), ("due", D("2015-06-01"))]
    assert items[0].cause_event_ids[:2] == ["a", "b"]
    assert items[1].cause_event_ids == ["c"]


# ------------------------------------------------------------ findings


@pytest.mark.parametrize(("value", "unit", "urgent"), [
    (0.99, "mmol/L", True), (1.0, "mmol/L", False), (3.9, "mg/dL", True),  # 0.973 mmol/L
])
def test_low_ionized_calcium_is_hypocalcaemia(value: float, unit: str, urgent: bool) -> None:
    result = run([lab("2015-02-03", "ionized_calcium", value, unit, event_id="ica")],
                 "2015-02-03")
    hypo = [f for f in result.findings if f.kind == "hypocalcaemia"]
    assert bool(hypo) is urgent
    if urgent:
        assert (hypo[0].on, hypo[0].event_id) == (D("2015-02-03"), "ica")
        assert "calcium treatment recommended" in hypo[0].detail


@pytest.mark.parametrize(("symptomatic", "urgent"), [(True, True), (False, False),
                                                     (None, False)])
def test_symptomatic_hypocalcaemia_event(symptomatic: bool | None, urgent: bool) -> None:
    result = run([adverse("2015-02-03", "hypocalcaemia", symptomatic=symptomatic)],
                 "2015-02-03")
    assert [f.kind for f in result.findings] == (["hypocalcaemia"] if urgent else [])


@pytest.mark.parametrize(("calcium", "suggested"), [(2.09, True), (2.1, False)])
def test_low_total_calcium_suggests_supplements(calcium: float, suggested: bool) -> None:
    result = run([lab("2015-02-03", "calcium", calcium)], "2015-02-03")
    assert [f.kind for f in result.findings] == (["supplement_suggested"] if suggested else [])


def test_supplement_suggestion_suppressed_by_an_open_course() -> None:
    low = lab("2015-02-03", "calcium", 1.9)
    course = started("2015-02-04", "ca1", drug="calcium")
    assert run([low, course], "2015-02-04").findings == []
    vit_d_course = started("2015-02-04", "vd1", drug="vitamin_d")
    assert run([low, vit_d_course], "2015-02-04").findings == []
    ended = [low, course, stopped("2015-03-01", "ca1")]
    assert [f.kind for f in run(ended, "2015-03-01").findings] == ["supplement_suggested"]


def test_latest_calcium_decides() -> None:
    facts = [lab("2015-02-03", "calcium", 1.9), lab("2015-02-20", "calcium", 2.3)]
    assert run(facts, "2015-02-20").findings == []
    assert [f.kind for f in run(facts, "2015-02-19").findings] == ["supplement_suggested"]


@pytest.mark.parametrize(("vit_d", "ratio", "suggested"), [
    (49.9, 1.5, True),
    (50.0, 1.5, False),   # not below 50 nmol/L
    (49.9, 2.0, True),    # 2.0 is still normal
    (49.9, 2.5, False),   # raised urine Ca/Cr: no vitamin D
    (49.9, None, False),  # normal ratio not documented [reading]
])
def test_low_vitamin_d_with_normal_urine_ca_cr(vit_d: float, ratio: float | None,
                                               suggested: bool) -> None:
    facts = [lab("2015-02-03", "vitamin_d_25oh", vit_d, event_id="vd")]
    if ratio is not None:
        facts.append(lab("2015-02-03", "urine_calcium_creatinine", ratio))
    result = run(facts, "2015-02-03")
    kinds = [(f.kind, f.event_id) for f in result.findings]
    assert kinds == ([("supplement_suggested", "vd")] if suggested else [])


def test_vitamin_d_in_ng_per_ml_is_converted() -> None:
    facts = [lab("2015-02-03", "vitamin_d_25oh", 19.0, "ng/mL"),  # 47.4 nmol/L
             lab("2015-02-03", "urine_calcium_creatinine", 0.3, "mg/mg")]
    assert [f.kind for f in run(facts, "2015-02-03").findings] == ["supplement_suggested"]


def test_as_json_is_the_contract_item() -> None:
    result = run(induction_with_baseline(), "2015-01-09")
    assert result.as_json() == [
        {"item": "baseline_labs", "status": "satisfied", "due_on": "2015-01-01", "missing": []},
        {"item": "post_dose_2_labs", "status": "overdue", "due_on": "2015-01-03",
         "missing": POST},
        {"item": "post_dose_3_labs", "status": "due", "due_on": "2015-01-04",
         "missing": POST},
    ]
