"""Disease course (clinical-rules §1) at exact boundaries."""

from __future__ import annotations

from datetime import time
from typing import Any

import pytest

from tests.unit.projection_builders import Log, d
from tracker.projections.course import DiseaseCourse, disease_course
from tracker.protocol import DEFAULT_PROTOCOL, Protocol


def course(log: Log, at: str, protocol: Protocol = DEFAULT_PROTOCOL) -> DiseaseCourse:
    return disease_course(log.facts(at), d(at), protocol)


def relapse_log(second: str, *, free_since: str | None = None) -> Log:
    """Onset 5 Jan, absence documented 10 Feb (b), symptoms again on ``second``."""
    log = Log()
    log.enrol("2015-01-01")
    log.symptomatic("2015-01-05")
    log.quiet("2015-02-10", symptom_free_since=free_since)
    log.symptomatic(second)
    return log


# -- observations -------------------------------------------------------------------------

def test_no_observation_is_unknown_with_onset_as_last_activity() -> None:
    log = Log()
    log.enrol("2015-01-01")
    c = course(log, "2016-01-01")
    assert c.state == "unknown"
    assert c.last_activity == d("2015-01-01")
    assert c.remission_since is None


def test_fever_alone_is_neither_symptomatic_nor_active() -> None:
    log = Log()
    log.enrol("2015-01-01")
    log.visit("2015-01-05", fever=True)
    assert course(log, "2015-01-05").state == "inactive"


def test_fever_only_visit_does_not_make_a_relapse() -> None:
    log = relapse_log("2015-06-01")
    log.events.pop()  # drop the symptomatic visit of 1 June
    log.visit("2015-06-01", fever=True)
    c = course(log, "2015-06-01")
    assert c.relapse_count == 0
    assert c.state == "inactive"


@pytest.mark.parametrize("extra", [{"physician_global_active": True},
                                   {"active_lesions": [{"site": "tibia", "side": "left"}]}])
def test_visit_without_symptoms_is_active_by_physician_or_lesion(extra: dict[str, Any]
                                                                  ) -> None:
    log = Log()
    log.enrol("2015-01-01")
    log.visit("2015-03-01", **extra)
    c = course(log, "2015-03-01")
    assert (c.state, c.last_activity) == ("active", d("2015-03-01"))


def test_imaging_never_documents_inactivity() -> None:
    log = Log()
    log.enrol("2015-01-01")
    log.symptomatic("2015-01-05")
    log.imaging("2015-01-20", "whole_body_mri",
                lesions=[{"site": "tibia", "active": False}, {"site": "femur"}])
    c = course(log, "2015-08-01")
    assert c.state == "active"
    assert c.last_activity == d("2015-01-05")


def test_only_mri_and_scintigraphy_are_observations() -> None:
    log = Log()
    log.enrol("2015-01-01")
    log.imaging("2015-02-01", "radiograph", lesions=[{"site": "tibia", "active": True}])
    log.imaging("2015-02-02", "ct", lesions=[{"site": "tibia", "active": True}])
    assert course(log, "2015-02-03").state == "unknown"
    log.imaging("2015-02-04", "bone_scintigraphy", lesions=[{"site": "rib", "active": True}])
    c = course(log, "2015-02-04")
    assert (c.state, c.last_activity) == ("active", d("2015-02-04"))


def test_activity_wins_on_one_day_whatever_the_order() -> None:
    for first_visit in (True, False):
        log = Log()
        log.enrol("2015-01-01")
        lesions: list[dict[str, Any]] = [{"site": "clavicle", "side": "right", "active": True}]
        if first_visit:
            log.quiet("2015-03-01", at_time=time(8))
            log.imaging("2015-03-01", at_time=time(15), lesions=lesions)
        else:
            log.imaging("2015-03-01", at_time=time(8), lesions=lesions)
            log.quiet("2015-03-01", at_time=time(15))
        assert course(log, "2015-03-01").state == "active"


# -- relapse --------------------------------------------------------------------------------

@pytest.mark.parametrize(("second", "is_relapse"), [
    ("2015-03-09", False), ("2015-03-10", False), ("2015-03-11", True)])
def test_relapse_strictly_over_one_month_after_b(second: str, is_relapse: bool) -> None:
    c = course(relapse_log(second), second)
    assert c.relapse_count == (1 if is_relapse else 0)
    assert c.relapse_dates == ([d(second)] if is_relapse else [])
    assert c.state == "active"
    assert c.in_relapse is is_relapse


@pytest.mark.parametrize(("free_since", "is_relapse"), [
    ("2015-02-05", True),   # b + 1 month = 5 March < 6 March
    ("2015-02-06", False),  # b + 1 month = 6 March, not over
    (None, False)])         # b = visit date 10 Feb
def test_symptom_free_since_moves_b(free_since: str | None, is_relapse: bool) -> None:
    c = course(relapse_log("2015-03-06", free_since=free_since), "2015-03-06")
    assert c.relapse_count == (1 if is_relapse else 0)


def test_b_comes_from_the_first_quiet_visit_after_the_symptoms() -> None:
    log = Log()
    log.enrol("2015-01-01")
    log.symptomatic("2015-01-05")
    log.quiet("2015-02-10")  # b
    log.quiet("2015-03-01", symptom_free_since="2015-01-06")  # does not move b earlier
    log.symptomatic("2015-03-10")
    assert course(log, "2015-03-10").relapse_count == 0
    log.symptomatic("2015-03-11")
    assert course(log, "2015-03-11").relapse_count == 0  # continues the episode of 10 March


def test_symptom_free_since_cannot_precede_the_last_symptoms() -> None:
    log = Log()
    log.enrol("2015-01-01")
    log.symptomatic("2015-01-05")
    log.quiet("2015-01-20", symptom_free_since="2014-11-01")  # b clamped to 5 Jan
    log.symptomatic("2015-02-05")
    assert course(log, "2015-02-05").relapse_count == 0
    log2 = Log()
    log2.enrol("2015-01-01")
    log2.symptomatic("2015-01-05")
    log2.quiet("2015-01-20", symptom_free_since="2014-11-01")
    log2.symptomatic("2015-02-06")
    assert course(log2, "2015-02-06").relapse_count == 1


def test_symptom_free_since_after_the_visit_is_clamped_to_the_visit() -> None:
    c = course(relapse_log("2015-03-11", free_since="2015-03-01"), "2015-03-11")
    assert c.relapse_count == 1  # b = 10 Feb, the visit date


def test_first_symptomatic_visit_is_onset_never_relapse() -> None:
    log = Log()
    log.enrol("2015-01-01")
    log.quiet("2015-01-05")
    log.symptomatic("2015-06-01")
    c = course(log, "2015-06-01")
    assert (c.relapse_count, c.in_relapse, c.state) == (0, False, "active")


def test_symptoms_without_documented_absence_continue_the_episode() -> None:
    log = Log()
    log.enrol("2015-01-01")
    log.symptomatic("2015-01-05")
    log.symptomatic("2015-05-05")
    assert course(log, "2015-05-05").relapse_count == 0


def test_quiet_visit_on_the_day_of_symptoms_documents_no_absence() -> None:
    log = Log()
    log.enrol("2015-01-01")
    log.symptomatic("2015-01-05", at_time=time(9))
    log.quiet("2015-01-05", at_time=time(17), symptom_free_since="2014-12-01")
    log.symptomatic("2015-03-01")
    assert course(log, "2015-03-01").relapse_count == 0


def test_symptoms_on_the_day_absence_is_documented_are_no_relapse() -> None:
    log = Log()
    log.enrol("2015-01-01")
    log.symptomatic("2015-01-05")
    log.quiet("2015-04-01", symptom_free_since="2015-01-10", at_time=time(9))
    log.symptomatic("2015-04-01", at_time=time(16))
    c = course(log, "2015-04-01")
    assert (c.relapse_count, c.state) == (0, "active")


def test_relapse_finding_and_explanation() -> None:
    log = relapse_log("2015-03-11")
    visit_id = log.events[-1].event_id
    c = course(log, "2015-03-20")
    assert [(f.kind, f.on, f.event_id) for f in c.findings] == [
        ("relapse", d("2015-03-11"), visit_id)]
    [text] = [e.text for e in c.explanations if e.subject == "relapse:2015-03-11"]
    assert "since 2015-02-10" in text and "over 1 month" in text


def test_two_relapses_counted_in_order() -> None:
    log = relapse_log("2015-03-11")
    log.quiet("2015-04-01")
    log.symptomatic("2015-05-02")
    c = course(log, "2015-05-02")
    assert c.relapse_dates == [d("2015-03-11"), d("2015-05-02")]


def test_relapse_gap_is_configurable() -> None:
    two = Protocol(relapse_gap_months=2)
    assert course(relapse_log("2015-04-10"), "2015-04-10", two).relapse_count == 0
    assert course(relapse_log("2015-04-11"), "2015-04-11", two).relapse_count == 1


# -- in_relapse -----------------------------------------------------------------------------

def test_in_relapse_follows_the_episode() -> None:
    log = relapse_log("2015-03-11")
    log.symptomatic("2015-03-20")  # same episode
    assert course(log, "2015-03-20").in_relapse is True
    log.quiet("2015-04-01")
    c = course(log, "2015-04-01")
    assert (c.state, c.in_relapse) == ("inactive", False)
    log.visit("2015-04-15", physician_global_active=True)  # not a relapse: same episode
    c = course(log, "2015-04-15")
    assert (c.state, c.in_relapse, c.relapse_count) == ("active", True, 1)


def test_activity_after_remission_starts_a_new_non_relapse_episode() -> None:
    log = relapse_log("2015-03-11")
    log.quiet("2015-04-01")
    log.visit("2015-09-13", physician_global_active=True)  # remission since 12 Sep
    c = course(log, "2015-09-13")
    assert (c.state, c.in_relapse) == ("active", False)


def test_imaging_activity_after_remission_ends_the_relapse_episode() -> None:
    log = relapse_log("2015-03-11")
    log.quiet("2015-10-01")  # b = 1 Oct; remission since 12 Sep
    log.imaging("2015-10-05", lesions=[{"site": "tibia", "active": True}])  # not silent yet
    c = course(log, "2015-10-05")
    assert (c.state, c.in_relapse, c.silent_radiological_activity) == ("active", False, [])


def test_onset_episode_is_not_in_relapse() -> None:
    log = Log()
    log.enrol("2015-01-01")
    log.symptomatic("2015-01-05")
    assert course(log, "2015-01-05").in_relapse is False


# -- remission ------------------------------------------------------------------------------

@pytest.mark.parametrize(("at", "state"), [
    ("2015-09-09", "inactive"), ("2015-09-10", "inactive"), ("2015-09-11", "remission")])
def test_remission_strictly_over_six_months(at: str, state: str) -> None:
    log = Log()
    log.enrol("2014-12-01")
    last = log.symptomatic("2015-03-10", by="dr.ruiz")
    log.quiet("2015-04-01")
    c = course(log, at)
    assert c.state == state
    assert c.last_activity == d("2015-03-10")
    if state == "remission":
        assert c.remission_since == d("2015-09-11")
        assert [(f.kind, f.on, f.event_id) for f in c.findings] == [
            ("remission_reached", d("2015-09-11"), last)]
        [text] = [e.text for e in c.explanations if e.subject == "state"]
        assert text.startswith("remission since 2015-09-11: last activity 2015-03-10 "
                               "(visit by dr.ruiz")
        assert "no activity for over 6 months" in text
    else:
        assert c.remission_since is None
        assert c.findings == []


@pytest.mark.parametrize(("last", "at", "state", "since"), [
    ("2014-08-31", "2015-02-28", "inactive", None),
    ("2014-08-31", "2015-03-01", "remission", "2015-03-01"),
    ("2015-08-31", "2016-02-28", "inactive", None),
    ("2015-08-31", "2016-02-29", "inactive", None),
    ("2015-08-31", "2016-03-01", "remission", "2016-03-01"),
])
def test_remission_end_of_month_clamping(last: str, at: str, state: str,
                                         since: str | None) -> None:
    log = Log()
    log.enrol("2014-06-01")
    log.symptomatic(last)
    log.quiet("2015-09-15" if last.startswith("2015") else "2014-09-15")
    c = course(log, at)
    assert c.state == state
    assert c.remission_since == (d(since) if since else None)


def test_remission_needs_the_latest_observation_inactive() -> None:
    log = Log()
    log.enrol("2015-01-01")
    log.symptomatic("2015-01-05")
    assert course(log, "2016-01-05").state == "active"


def test_remission_from_enrolment_onset_has_no_activity_event() -> None:
    log = Log()
    log.enrol("2014-01-01")
    log.quiet("2014-03-01")
    assert course(log, "2014-07-01").state == "inactive"
    c = course(log, "2014-07-02")
    assert (c.state, c.remission_since) == ("remission", d("2014-07-02"))
    assert [(f.kind, f.event_id) for f in c.findings] == [("remission_reached", None)]


def test_without_any_activity_date_there_is_no_remission() -> None:
    log = Log()
    log.enrol(None)
    log.quiet("2014-03-01")
    c = course(log, "2016-03-01")
    assert (c.state, c.last_activity) == ("inactive", None)


def test_active_imaging_resets_the_remission_clock() -> None:
    log = Log()
    log.enrol("2015-01-01")
    log.symptomatic("2015-01-05")
    log.quiet("2015-01-15")
    log.imaging("2015-02-01", "bone_scintigraphy", lesions=[{"site": "rib", "active": True}])
    log.quiet("2015-03-01")
    assert course(log, "2015-08-01").state == "inactive"
    c = course(log, "2015-08-02")
    assert (c.state, c.remission_since, c.last_activity) == (
        "remission", d("2015-08-02"), d("2015-02-01"))


# -- silent radiological activity -------------------------------------------------------------

@pytest.mark.parametrize(("on", "silent"), [
    ("2015-03-09", False), ("2015-03-10", False), ("2015-03-11", True)])
def test_silent_radiological_activity_after_over_a_month(on: str, silent: bool) -> None:
    log = Log()
    log.enrol("2015-01-01")
    log.symptomatic("2015-01-05")
    log.quiet("2015-02-10")
    log.imaging(on, lesions=[{"site": "clavicle", "side": "left", "active": True}])
    c = course(log, on)
    assert c.silent_radiological_activity == ([d(on)] if silent else [])
    assert (c.state, c.relapse_count, c.in_relapse) == ("active", 0, False)
    assert c.last_activity == d(on)


def test_silent_activity_uses_symptom_free_since() -> None:
    log = Log()
    log.enrol("2015-01-01")
    log.symptomatic("2015-01-05")
    log.quiet("2015-02-20", symptom_free_since="2015-01-20")
    log.imaging("2015-02-21", lesions=[{"site": "tibia", "active": True}])
    assert course(log, "2015-02-21").silent_radiological_activity == [d("2015-02-21")]


@pytest.mark.parametrize(("on", "silent"), [
    ("2015-02-20", False),  # symptom_free_since + 1 month: not over a month yet
    ("2015-02-21", True),   # the day after: silent, though only a day after the quiet visit
])
def test_the_silent_stretch_starts_at_symptom_free_since(on: str, silent: bool) -> None:
    """docs/readings.md: the stretch starts where the absence does (symptom_free_since,
    clamped), not at the quiet visit that documents it."""
    log = Log()
    log.enrol("2015-01-01")
    log.symptomatic("2015-01-05")
    log.quiet("2015-02-19", symptom_free_since="2015-01-20")
    log.imaging(on, lesions=[{"site": "tibia", "active": True}])
    assert course(log, on).silent_radiological_activity == ([d(on)] if silent else [])


def test_imaging_on_a_symptomatic_day_is_not_silent() -> None:
    log = Log()
    log.enrol("2015-01-01")
    log.symptomatic("2015-01-05")
    log.quiet("2015-02-10")
    log.imaging("2015-04-01", lesions=[{"site": "tibia", "active": True}], at_time=time(8))
    log.symptomatic("2015-04-01", at_time=time(16))
    c = course(log, "2015-04-01")
    assert c.silent_radiological_activity == []
    assert (c.relapse_dates, c.in_relapse) == ([d("2015-04-01")], True)


def test_symptoms_in_between_end_the_stretch() -> None:
    log = Log()
    log.enrol("2015-01-01")
    log.symptomatic("2015-01-05")
    log.quiet("2015-02-10")
    log.symptomatic("2015-03-01")  # not a relapse, but the stretch is over
    log.imaging("2015-05-01", lesions=[{"site": "tibia", "active": True}])
    assert course(log, "2015-05-01").silent_radiological_activity == []


def test_relapse_after_silent_activity_is_still_a_relapse() -> None:
    log = Log()
    log.enrol("2015-01-01")
    log.symptomatic("2015-01-05")
    log.quiet("2015-02-10")
    log.imaging("2015-04-01", lesions=[{"site": "tibia", "active": True}])
    log.symptomatic("2015-04-10")
    c = course(log, "2015-04-10")
    assert c.silent_radiological_activity == [d("2015-04-01")]
    assert (c.relapse_dates, c.in_relapse) == ([d("2015-04-10")], True)


# -- contract ---------------------------------------------------------------------------------

def test_as_json_is_the_contract_disease_object() -> None:
    log = relapse_log("2015-03-11")
    log.quiet("2015-04-01")
    assert course(log, "2015-10-01").as_json(on_treatment=False) == {
        "state": "remission", "in_relapse": False, "relapse_count": 1,
        "relapse_dates": ["2015-03-11"], "last_activity": "2015-03-11",
        "remission_since": "2015-09-12", "on_treatment": False,
        "silent_radiological_activity": [],
    }


def test_evaluation_date_hides_later_observations() -> None:
    log = relapse_log("2015-03-11")
    c = course(log, "2015-03-10")
    assert (c.relapse_count, c.state) == (0, "inactive")
