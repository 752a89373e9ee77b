"""Diagnosis (clinical-rules §2): Jansson criteria, delay, biopsy advice."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.unit.projection_builders import Log, d
from tracker.projections.diagnosis import ITEMS, DiagnosisResult, diagnosis
from tracker.protocol import DEFAULT_PROTOCOL, Protocol


def dx(log: Log, at: str = "2016-12-31", protocol: Protocol = DEFAULT_PROTOCOL
       ) -> DiagnosisResult:
    return diagnosis(log.facts(at), d(at), protocol)


def enrolled(onset: str | None = "2015-01-10") -> Log:
    log = Log()
    log.enrol(onset)
    return log


# -- the verdict ------------------------------------------------------------------------------

def test_two_major_confirm() -> None:
    log = enrolled()
    log.assess("2015-03-01", multifocal_lesions=True, sterile_biopsy_inflammation=True)
    r = dx(log)
    assert (r.major, r.confirmed) == (2, True)


@pytest.mark.parametrize(("minors", "expected"), [(3, True), (2, False)])
def test_one_major_needs_three_minor(minors: int, expected: bool) -> None:
    log = enrolled(None)
    chosen = ["good_general_status", "normal_labs_raised_esr", "hyperostosis"][:minors]
    criteria: dict[str, Any] = dict.fromkeys(chosen, True)
    log.assess("2015-03-01", multifocal_lesions=True, **criteria)
    r = dx(log)
    assert (r.major, r.minor, r.confirmed) == (1, minors, expected)


def test_minor_criteria_alone_never_confirm() -> None:
    log = enrolled(None)
    log.assess("2015-03-01", good_general_status=True, course_over_6_months=True,
               normal_labs_raised_esr=True, hyperostosis=True, autoimmune_association=True)
    r = dx(log)
    assert (r.major, r.minor, r.confirmed) == (0, 5, False)


def test_false_items_do_not_count() -> None:
    log = enrolled(None)
    log.assess("2015-03-01", multifocal_lesions=True, sterile_biopsy_inflammation=False)
    r = dx(log)
    assert (r.major, r.confirmed) == (1, False)
    assert "sterile_biopsy_inflammation" not in r.unknown


def test_a_confirmed_verdict_lists_no_unknown_item() -> None:
    log = enrolled(None)
    criteria: dict[str, Any] = {k: False for k in ITEMS if k != "hyperostosis"}
    criteria |= {"multifocal_lesions": True, "osteolytic_or_sclerotic_lesion": True}
    log.assess("2015-03-01", **criteria)
    r = dx(log)
    assert r.confirmed is True
    assert r.unknown == []  # no value of hyperostosis can unconfirm two majors
    assert r.as_json()["jansson"] == {"major": 2, "minor": 0, "confirmed": True,
                                      "unknown": []}


def test_an_unknown_that_cannot_confirm_is_not_listed() -> None:
    # the case: 1 major and 1 minor known, only hyperostosis unknown: at best
    # 1 major + 2 minor, never confirmed
    log = enrolled(None)
    criteria: dict[str, Any] = {k: False for k in ITEMS if k != "hyperostosis"}
    criteria |= {"multifocal_lesions": True, "good_general_status": True}
    log.assess("2015-03-01", **criteria)
    r = dx(log)
    assert (r.major, r.minor, r.confirmed, r.unknown) == (1, 1, False, [])


def test_unknown_only_names_items_that_could_turn_the_verdict() -> None:
    log = enrolled(None)
    # no major known; all majors false but one; minors: one unknown, rest false
    log.assess("2015-03-01", multifocal_lesions=False, osteolytic_or_sclerotic_lesion=False,
               sterile_biopsy_inflammation=False, good_general_status=False,
               course_over_6_months=False, normal_labs_raised_esr=False,
               autoimmune_association=False)
    r = dx(log)
    assert r.unknown == []  # even both true give 1 major + 1 minor
    log2 = enrolled(None)
    log2.assess("2015-03-01", multifocal_lesions=True, good_general_status=True,
                course_over_6_months=True, normal_labs_raised_esr=False,
                autoimmune_association=False, osteolytic_or_sclerotic_lesion=False)
    r2 = dx(log2)
    # one more major, or hyperostosis as the third minor, confirms
    assert r2.unknown == ["sterile_biopsy_inflammation",
                          "palmoplantar_psoriasis_pustulosis", "hyperostosis"]


def _flips(items: dict[str, bool | None], k: str) -> bool:
    """Literally the rule: some assignment of the other unknowns under which k's value
    decides ``confirmed``."""
    from itertools import product

    from tracker.projections.diagnosis import MAJOR, confirmed

    others = [x for x in ITEMS if items[x] is None and x != k]
    for values in product([False, True], repeat=len(others)):
        verdicts = set()
        for v in (False, True):
            full = {**items, **dict(zip(others, values, strict=True)), k: v}
            verdicts.add(confirmed(sum(1 for x in MAJOR if full[x]),
                                   sum(1 for x in ITEMS if x not in MAJOR and full[x])))
        if len(verdicts) == 2:
            return True
    return False


@settings(max_examples=300, deadline=None)
@given(st.fixed_dictionaries({k: st.sampled_from([True, False, None]) for k in ITEMS}))
def test_unknown_is_exactly_the_items_whose_value_can_flip_the_verdict(
        criteria: dict[str, bool | None]) -> None:
    log = enrolled(None)
    log.assess("2015-03-01", **{k: v for k, v in criteria.items() if v is not None})
    r = dx(log)
    assert r.unknown == [k for k in ITEMS if criteria[k] is None and _flips(criteria, k)]


# -- explicit and derived -----------------------------------------------------------------------

def two_sites(log: Log) -> None:
    log.imaging("2015-02-01", "bone_scintigraphy",
                lesions=[{"site": "clavicle", "side": "right", "active": True}])
    log.symptomatic("2015-02-05", active_lesions=[{"site": "tibia", "side": "left"}])


def test_explicit_assessment_wins_over_derivation() -> None:
    log = enrolled()
    two_sites(log)
    log.assess("2015-03-01", multifocal_lesions=False)
    r = dx(log)
    assert (r.items["multifocal_lesions"], r.sources["multifocal_lesions"]) == (
        False, "assessment")
    [text] = [e.text for e in r.explanations if e.subject == "jansson:multifocal_lesions"]
    assert "would derive True" in text


def test_explicit_null_falls_back_to_derivation() -> None:
    log = enrolled()
    two_sites(log)
    log.assess("2015-03-01", multifocal_lesions=None)
    r = dx(log)
    assert (r.items["multifocal_lesions"], r.sources["multifocal_lesions"]) == (
        True, "derived")


def test_latest_assessment_wins_and_earlier_ones_do_not_carry_over() -> None:
    log = enrolled(None)
    log.assess("2015-03-01", multifocal_lesions=True, hyperostosis=True)
    log.assess("2015-04-01", multifocal_lesions=False)
    r = dx(log)
    assert r.items["multifocal_lesions"] is False
    assert r.items["hyperostosis"] is None
    assert r.diagnosed_on == d("2015-04-01")


@pytest.mark.parametrize(("lesions", "expected"), [
    ([("tibia", "left"), ("tibia", "left")], None),
    ([("tibia", "left"), ("tibia", "right")], True),
    ([("tibia", None), ("tibia", "left")], None),
    ([("tibia", None), ("femur", None)], True),
    ([("tibia", "left")], None),
])
def test_multifocal_counts_distinct_site_and_side(lesions: list[tuple[str, str | None]],
                                                  expected: bool | None) -> None:
    log = enrolled()
    for i, (site, side) in enumerate(lesions):
        log.imaging(f"2015-02-0{i + 1}", "mri",
                    lesions=[{"site": site, "side": side, "active": False}])
    log.assess("2015-03-01")
    assert dx(log).items["multifocal_lesions"] is expected


def test_multifocal_across_imaging_and_visits_but_not_renal_ultrasound() -> None:
    log = enrolled()
    log.imaging("2015-02-01", "renal_ultrasound", lesions=[{"site": "other"}])
    log.visit("2015-02-02", active_lesions=[{"site": "sternum", "side": "midline"}])
    log.assess("2015-03-01")
    assert dx(log).items["multifocal_lesions"] is None
    log.imaging("2015-02-03", "radiograph", lesions=[{"site": "clavicle", "side": "left"}])
    assert dx(log).items["multifocal_lesions"] is True


@pytest.mark.parametrize(("findings", "sterile", "expected"), [
    (["fibrosis"], True, True), (["inflammation", "necrosis"], True, True),
    (["sclerosis"], True, True), (["necrosis"], True, False),
    (["no_findings"], True, False), (["inflammation"], False, False)])
def test_sterile_biopsy_derivation(findings: list[str], sterile: bool,
                                   expected: bool) -> None:
    log = enrolled()
    log.biopsy("2015-02-01", findings=findings, culture_sterile=sterile)
    log.assess("2015-03-01")
    assert dx(log).items["sterile_biopsy_inflammation"] is expected


def test_no_biopsy_leaves_sterile_biopsy_unknown() -> None:
    log = enrolled()
    log.assess("2015-03-01")
    assert dx(log).items["sterile_biopsy_inflammation"] is None


@pytest.mark.parametrize(("diagnosed", "expected"), [
    ("2015-07-30", False), ("2015-07-31", False), ("2015-08-01", True)])
def test_course_over_six_months_from_onset_to_assessment(diagnosed: str,
                                                         expected: bool) -> None:
    log = enrolled("2015-01-31")
    log.assess(diagnosed)
    assert dx(log).items["course_over_6_months"] is expected


def test_course_uses_diagnosed_on_not_the_evaluation_date() -> None:
    log = enrolled("2015-01-31")
    log.assess("2015-09-01", diagnosed_on="2015-06-01")
    assert dx(log, "2016-06-01").items["course_over_6_months"] is False


@pytest.mark.parametrize(("condition", "label", "item", "expected"), [
    ("ibd", None, "autoimmune_association", True),
    ("acne_conglobata", None, "autoimmune_association", True),
    ("sapho", None, "autoimmune_association", True),
    ("psoriasis", None, "autoimmune_association", None),
    ("palmoplantar_pustulosis", None, "autoimmune_association", None),
    ("palmoplantar_pustulosis", None, "palmoplantar_psoriasis_pustulosis", True),
    ("psoriasis", None, "palmoplantar_psoriasis_pustulosis", None),
    ("psoriasis", "Palmoplantar psoriasis", "palmoplantar_psoriasis_pustulosis", True),
])
def test_comorbidity_derivations(condition: str, label: str | None, item: str,
                                 expected: bool | None) -> None:
    log = enrolled()
    log.comorbidity("2015-02-01", condition, label)
    log.assess("2015-03-01")
    assert dx(log).items[item] is expected


def test_hyperostosis_from_an_imaging_finding() -> None:
    log = enrolled()
    log.imaging("2015-02-01", "radiograph",
                lesions=[{"site": "clavicle", "findings": ["sclerosis"]}])
    log.assess("2015-03-01")
    assert dx(log).items["hyperostosis"] is None
    log.imaging("2015-02-02", "mri", lesions=[{"site": "clavicle", "findings": ["Hyperostosis"]}])
    assert dx(log).items["hyperostosis"] is True


def test_not_derived_items_stay_unknown() -> None:
    log = enrolled()
    log.assess("2015-03-01")
    r = dx(log)
    for k in ("osteolytic_or_sclerotic_lesion", "good_general_status",
              "normal_labs_raised_esr"):
        assert r.items[k] is None


# -- diagnostic delay -------------------------------------------------------------------------

@pytest.mark.parametrize(("diagnosed", "months", "delayed"), [
    ("2015-06-09", 4.928, False), ("2015-06-10", 4.961, False), ("2015-06-11", 4.994, True)])
def test_delay_over_five_months_is_flagged(diagnosed: str, months: float,
                                           delayed: bool) -> None:
    log = enrolled("2015-01-10")
    assessed = log.assess(diagnosed)
    r = dx(log)
    assert (r.diagnostic_delay_months, r.delayed) == (months, delayed)
    delay_findings = [(f.on, f.event_id) for f in r.findings if f.kind == "diagnostic_delay"]
    assert delay_findings == ([(d(diagnosed), assessed)] if delayed else [])


def test_delay_in_mean_months_rounded_to_three_decimals() -> None:
    log = enrolled("2015-01-01")
    log.assess("2015-03-15")  # 73 days / 30.4375 = 2.3983…
    assert dx(log).diagnostic_delay_months == 2.398


def test_delay_threshold_is_configurable() -> None:
    log = enrolled("2015-01-10")
    log.assess("2015-04-11")
    assert dx(log, protocol=Protocol(diagnostic_delay_months=3)).delayed is True
    assert dx(log, protocol=Protocol(diagnostic_delay_months=3.5)).delayed is False


def test_no_onset_no_delay() -> None:
    log = enrolled(None)
    log.assess("2015-03-01")
    r = dx(log)
    assert (r.diagnostic_delay_months, r.delayed) == (None, None)


# -- biopsy advice ---------------------------------------------------------------------------

def long_multifocal(log: Log) -> None:
    two_sites(log)


def test_no_biopsy_advice_for_long_multifocal_disease() -> None:
    log = enrolled("2014-01-01")
    long_multifocal(log)
    log.assess("2015-03-01")
    r = dx(log)
    assert r.biopsy_recommended is False
    assert [f for f in r.findings if f.kind == "biopsy_recommended"] == []


def test_biopsy_recommended_for_a_single_focus() -> None:
    log = enrolled("2014-01-01")
    log.imaging("2015-02-01", "mri", lesions=[{"site": "femur", "side": "left", "active": True}])
    assessed = log.assess("2015-03-01")
    r = dx(log)
    assert r.biopsy_recommended is True
    assert [(f.kind, f.on, f.event_id) for f in r.findings] == [
        ("diagnostic_delay", d("2015-03-01"), assessed),
        ("biopsy_recommended", d("2015-03-01"), assessed)]


def test_biopsy_recommended_for_short_evolution() -> None:
    log = enrolled("2015-01-01")
    long_multifocal(log)
    log.assess("2015-07-01")  # exactly 6 months: not over
    assert dx(log).biopsy_recommended is True
    log2 = enrolled("2015-01-01")
    long_multifocal(log2)
    log2.assess("2015-07-02")
    assert dx(log2).biopsy_recommended is False


def test_biopsy_recommended_for_explicit_single_focus_and_lymphoma() -> None:
    log = enrolled("2014-01-01")
    log.assess("2015-03-01", multifocal_lesions=False)
    assert dx(log).biopsy_recommended is True
    log2 = enrolled("2014-01-01")
    long_multifocal(log2)
    log2.comorbidity("2015-02-10", "lymphoma")
    log2.assess("2015-03-01")
    assert dx(log2).biopsy_recommended is True


def test_no_biopsy_advice_once_a_biopsy_is_recorded() -> None:
    log = enrolled("2015-01-01")
    log.assess("2015-02-01", multifocal_lesions=False)
    log.biopsy("2015-02-20", findings=["inflammation"], culture_sterile=True)
    assert dx(log, "2015-02-19").biopsy_recommended is True
    assert dx(log, "2015-02-20").biopsy_recommended is False


# -- contract -------------------------------------------------------------------------------

def test_as_json_nulls_without_assessment() -> None:
    log = enrolled()
    two_sites(log)
    assert dx(log).as_json() == {"jansson": None, "diagnostic_delay_months": None,
                                 "delayed": None, "biopsy_recommended": None}


def test_as_json_shape() -> None:
    log = enrolled("2015-01-01")
    two_sites(log)
    log.biopsy("2015-02-10", findings=["fibrosis"], culture_sterile=True)
    log.assess("2015-03-15")
    assert dx(log).as_json() == {
        "jansson": {"major": 2, "minor": 0, "confirmed": True, "unknown": []},
        "diagnostic_delay_months": 2.398, "delayed": False, "biopsy_recommended": False}
