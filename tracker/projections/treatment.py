"""Treatment ladder (clinical-rules.md §3, seed Table 2): courses, step, corticoids, BSA.

A fold (``evolve`` dispatched on the fact's data type, folded with ``functools.reduce``)
keeps the medication courses, the latest weight and height and every prednisone dose as it
was set; ``_finish`` adds what depends on ``at`` and on the protocol's numbers.

Courses: ``MedicationStarted`` opens one (``since`` = its clinical date), ``MedicationChanged``
updates dose, unit, frequency or regimen of the open course with that id, and
``MedicationStopped`` closes it (``stopped_on`` = its clinical date; a course stopped on
``at`` is closed at ``at``). Changes or stops naming no open course are ignored. A start
re-using the id of an open course replaces that course **[reading]**.

Ladder: ibuprofen/naproxen 1, prednisone 2, pamidronate/zoledronic acid 3, adalimumab,
infliximab, etanercept, methotrexate 4; other drugs are not steps. ``step`` is the highest
step among open courses (None without one); ``on_treatment`` is whether one is open.
Courses come only from ``MedicationStarted``: infusions alone open no course.

``corticoid_days`` **[reading]**: ``(at - since).days`` of the open prednisone course (the
earliest-started when several are open): 0 on the start day, so "over 6 weeks" reads
``corticoid_days > 42``. Null when no prednisone course is open (a stopped one is history).

Findings, only for courses open at ``at`` **[reading]**, each naming the start event:
- ``corticoid_course_long`` detail ``warning`` on ``add_months(since, 1) + 1 day`` (over
  1 month) and detail ``urgent`` on ``since + 42 days + 1 day`` (over 6 weeks);
- ``nsaid_review_due`` detail ``info`` on ``add_months(since, 1)`` (review due at start +
  1 month), per NSAID course.

Prednisone dose check **[reading]**: each ``MedicationStarted``/``MedicationChanged`` that
sets a prednisone dose is converted to mg/kg/day: unit ``mg/kg/day`` as is; ``mg/kg`` times
doses a day; ``mg/day`` divided by the latest weight known at that event; ``mg`` times doses
a day divided by that weight. Doses a day come from ``frequency`` (daily = 1, twice daily =
2, three times daily = 3; see ``DOSES_A_DAY``); an unknown frequency, a missing weight or an
unknown unit leaves the dose unchecked (said so in ``explanations``). The value is rounded
to 3 decimals and compared without tolerance. Within the first 2 weeks of the course
(Table 2: "1-2 mg/kg/day for 2 weeks, then progressive reduction") a dose outside
[min, max] is a ``corticoid_dose_out_of_range`` deviation; from day 14 on, the taper is
the protocol, so only a dose above max is one.

Body-surface area (Mosteller) ``sqrt(height_cm * weight_kg / 3600)`` from the latest height
(visits) and the latest weight (visits and infusions); ``anthropometry_stale`` when either
was measured more than ``anthropometry_max_age_days`` before ``at``; both null when a
height or a weight is missing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, timedelta
from functools import reduce, singledispatch
from typing import Any

from events.vocabulary import (
    InfusionAdministered,
    MedicationChanged,
    MedicationStarted,
    MedicationStopped,
    VisitRecorded,
)
from tracker.facts import Fact
from tracker.projections.common import (
    Deviation,
    Explanation,
    Finding,
    add_months,
    r3,
    replace,
)
from tracker.protocol import Protocol

STEPS: dict[str, int] = {
    "ibuprofen": 1, "naproxen": 1, "prednisone": 2, "pamidronate": 3, "zoledronic_acid": 3,
    "adalimumab": 4, "infliximab": 4, "etanercept": 4, "methotrexate": 4,
}
NSAIDS = frozenset({"ibuprofen", "naproxen"})
FULL_DOSE_DAYS = 14  # Table 2: prednisone 1-2 mg/kg/day "for 2 weeks", then taper
DOSES_A_DAY: dict[str, int] = {
    **dict.fromkeys(("daily", "once_daily", "once_a_day", "qd", "od", "q24h", "every_24h",
                     "1/day", "1x/day", "per_day"), 1),
    **dict.fromkeys(("twice_daily", "twice_a_day", "bid", "q12h", "every_12h", "2/day",
                     "2x/day"), 2),
    **dict.fromkeys(("three_times_daily", "three_times_a_day", "tid", "q8h", "every_8h",
                     "3/day", "3x/day"), 3),
}


@dataclass(frozen=True, slots=True)
class Course:
    course_id: str
    drug: str
    since: date
    event_id: str  # the MedicationStarted
    dose: float | None = None
    dose_unit: str | None = None
    frequency: str | None = None
    route: str | None = None
    regimen: str | None = None
    stopped_on: date | None = None
    stop_reason: str | None = None

    @property
    def step(self) -> int | None:
        return STEPS.get(self.drug)

    @property
    def open(self) -> bool:
        return self.stopped_on is None

    def as_json(self) -> dict[str, Any]:
        return {"course_id": self.course_id, "drug": self.drug,
                "since": self.since.isoformat()}


@dataclass(frozen=True, slots=True)
class Measure:
    value: float
    on: date
    event_id: str


@dataclass(frozen=True, slots=True)
class DoseSet:
    """A prednisone dose as set by a start or change, with the weight known then."""

    event_id: str
    on: date
    course: Course  # the course after the event
    weight: Measure | None


@dataclass(frozen=True, slots=True)
class TreatmentFold:
    courses: tuple[Course, ...] = ()
    weight: Measure | None = None
    height: Measure | None = None
    doses: tuple[DoseSet, ...] = ()


def evolve(state: TreatmentFold, fact: Fact) -> TreatmentFold:
    return _apply(fact.data, state, fact)


@singledispatch
def _apply(data: Any, state: TreatmentFold, fact: Fact) -> TreatmentFold:
    return state


@_apply.register
def _started(data: MedicationStarted, state: TreatmentFold, fact: Fact) -> TreatmentFold:
    course = Course(data.course_id, data.drug, fact.on, fact.event_id, data.dose,
                    data.dose_unit, data.frequency, data.route, data.regimen)
    kept = tuple(c for c in state.courses if not (c.open and c.course_id == data.course_id))
    state = replace(state, courses=(*kept, course))
    return _note_dose(state, course, fact) if data.dose is not None else state


@_apply.register
def _changed(data: MedicationChanged, state: TreatmentFold, fact: Fact) -> TreatmentFold:
    old = _open_course(state, data.course_id)
    if old is None:
        return state
    new = replace(old, dose=data.dose if data.dose is not None else old.dose,
                  dose_unit=data.dose_unit if data.dose_unit is not None else old.dose_unit,
                  frequency=data.frequency if data.frequency is not None else old.frequency,
                  regimen=data.regimen if data.regimen is not None else old.regimen)
    state = replace(state, courses=tuple(new if c is old else c for c in state.courses))
    if new.dose is not None and (data.dose, data.dose_unit, data.frequency) != (None,) * 3:
        state = _note_dose(state, new, fact)
    return state


@_apply.register
def _stopped(data: MedicationStopped, state: TreatmentFold, fact: Fact) -> TreatmentFold:
    old = _open_course(state, data.course_id)
    if old is None:
        return state
    new = replace(old, stopped_on=fact.on, stop_reason=data.reason)
    return replace(state, courses=tuple(new if c is old else c for c in state.courses))


@_apply.register
def _visit(data: VisitRecorded, state: TreatmentFold, fact: Fact) -> TreatmentFold:
    if data.weight_kg is not None:
        state = replace(state, weight=Measure(data.weight_kg, fact.on, fact.event_id))
    if data.height_cm is not None:
        state = replace(state, height=Measure(data.height_cm, fact.on, fact.event_id))
    return state


@_apply.register
def _infusion(data: InfusionAdministered, state: TreatmentFold,
              fact: Fact) -> TreatmentFold:
    return replace(state, weight=Measure(data.weight_kg, fact.on, fact.event_id))


def _open_course(state: TreatmentFold, course_id: str) -> Course | None:
    return next((c for c in reversed(state.courses) if c.open and c.course_id == course_id),
                None)


def _note_dose(state: TreatmentFold, course: Course, fact: Fact) -> TreatmentFold:
    if course.drug != "prednisone":
        return state
    return replace(state, doses=(*state.doses,
                                 DoseSet(fact.event_id, fact.on, course, state.weight)))


def _norm(text: str | None) -> str:
    return (text or "").strip().lower().replace(" ", "_").replace("-", "_")


def mg_per_kg_day(dose: float, unit: str | None, frequency: str | None,
                  weight_kg: float | None) -> float | None:
    """A prednisone dose in mg/kg/day, or None when it cannot be converted."""
    u = _norm(unit).replace("_", "")
    per_day = DOSES_A_DAY.get(_norm(frequency))
    if u in ("mg/kg/day", "mg/kg/d"):
        return dose
    if u == "mg/kg":
        return dose * per_day if per_day else None
    if weight_kg is None:
        return None
    if u in ("mg/day", "mg/d"):
        return dose / weight_kg
    if u == "mg" and per_day:
        return dose * per_day / weight_kg
    return None


@dataclass(frozen=True)
class TreatmentState:
    open_courses: list[Course]
    closed_courses: list[Course]
    step: int | None
    on_treatment: bool
    corticoid_days: int | None
    bsa_m2: float | None
    anthropometry_stale: bool | None
    deviations: list[Deviation]
    findings: list[Finding]
    explanations: list[Explanation]

    def course(self, course_id: str) -> Course | None:
        """The open course with that id, else the latest closed one."""
        for c in (*self.open_courses, *reversed(self.closed_courses)):
            if c.course_id == course_id:
                return c
        return None

    def as_json(self) -> dict[str, Any]:
        """The contract's ``treatment`` object plus bsa_m2, anthropometry_stale, deviations."""
        return {
            "step": self.step,
            "open_courses": [c.as_json() for c in self.open_courses],
            "corticoid_days": self.corticoid_days,
            "bsa_m2": self.bsa_m2,
            "anthropometry_stale": self.anthropometry_stale,
            "deviations": [d.as_json() for d in self.deviations],
        }


def treatment(facts: list[Fact], at: date, protocol: Protocol) -> TreatmentState:
    """Courses, ladder step, corticoid duration and BSA at ``at`` (facts with on <= at)."""
    return _finish(reduce(evolve, facts, TreatmentFold()), at, protocol)


def _finish(s: TreatmentFold, at: date, p: Protocol) -> TreatmentState:
    open_courses = sorted((c for c in s.courses if c.open),
                          key=lambda c: (c.since, c.course_id))
    closed = sorted((c for c in s.courses if not c.open),
                    key=lambda c: (c.stopped_on or c.since, c.since, c.course_id))
    steps = [c.step for c in open_courses if c.step is not None]
    step = max(steps) if steps else None
    explanations: list[Explanation] = []
    if step is None:
        explanations.append(Explanation("step", "no CNO treatment course open"))
    else:
        top = [c for c in open_courses if c.step == step]
        explanations.append(Explanation(
            "step", f"step {step}: " + ", ".join(
                f"{c.drug} course {c.course_id} open since {c.since.isoformat()}"
                for c in top), tuple(c.event_id for c in top)))

    findings: list[Finding] = []
    prednisone = [c for c in open_courses if c.drug == "prednisone"]
    corticoid_days = (at - prednisone[0].since).days if prednisone else None
    for c in prednisone:
        warn_on = add_months(c.since, p.corticoid_warning_months) + timedelta(days=1)
        urgent_on = c.since + timedelta(days=p.corticoid_urgent_days + 1)
        if at >= warn_on:
            findings.append(Finding("corticoid_course_long", warn_on, c.event_id, "warning"))
        if at >= urgent_on:
            findings.append(Finding("corticoid_course_long", urgent_on, c.event_id, "urgent"))
        explanations.append(Explanation(
            f"corticoid:{c.course_id}",
            f"prednisone course {c.course_id} since {c.since.isoformat()}: "
            f"{(at - c.since).days} days at {at.isoformat()}; over "
            f"{p.corticoid_warning_months} month from {warn_on.isoformat()} (warning), over "
            f"{p.corticoid_urgent_days} days from {urgent_on.isoformat()} (urgent)",
            (c.event_id,)))
    for c in open_courses:
        if c.drug in NSAIDS:
            review_on = add_months(c.since, p.nsaid_review_months)
            if at >= review_on:
                findings.append(Finding("nsaid_review_due", review_on, c.event_id, "info"))

    deviations = _dose_deviations(s.doses, p, explanations)
    bsa, stale = _bsa(s, at, p, explanations)
    findings.sort(key=lambda f: (f.on, f.kind))
    return TreatmentState(
        open_courses=open_courses, closed_courses=closed, step=step,
        on_treatment=step is not None, corticoid_days=corticoid_days, bsa_m2=bsa,
        anthropometry_stale=stale, deviations=deviations, findings=findings,
        explanations=explanations)


def _dose_deviations(doses: tuple[DoseSet, ...], p: Protocol,
                     explanations: list[Explanation]) -> list[Deviation]:
    out: list[Deviation] = []
    low, high = p.prednisone_min_mg_per_kg_day, p.prednisone_max_mg_per_kg_day
    for ds in doses:
        c = ds.course
        assert c.dose is not None
        weight = ds.weight.value if ds.weight else None
        value = mg_per_kg_day(c.dose, c.dose_unit, c.frequency, weight)
        stated = f"{c.dose:g} {c.dose_unit or '(no unit)'} {c.frequency or ''}".rstrip()
        subject = f"dose:{ds.event_id}"
        if value is None:
            explanations.append(Explanation(
                subject, f"prednisone {stated} on {ds.on.isoformat()} not checked: needs "
                         f"mg/kg/day, or mg/day or mg with a daily frequency and a weight",
                (ds.event_id,)))
            continue
        value = r3(value)
        taper = (ds.on - c.since).days >= FULL_DOSE_DAYS
        bad = value > high or (not taper and value < low)
        basis = f" with weight {weight:g} kg" if weight is not None and ds.weight else ""
        if taper:
            rule = f"above {high:g}" if bad else f"not above {high:g}"
        else:
            rule = f"outside {low:g}-{high:g}" if bad else f"within {low:g}-{high:g}"
        text = (f"prednisone {stated} = {value:g} mg/kg/day{basis} on {ds.on.isoformat()}: "
                f"{rule} mg/kg/day{' (taper after 2 weeks)' if taper else ''}")
        ids = (ds.event_id, ds.weight.event_id) if ds.weight and basis else (ds.event_id,)
        explanations.append(Explanation(subject, text, ids))
        if bad:
            out.append(Deviation(ds.event_id, "corticoid_dose_out_of_range", text, ds.on))
    return out


def _bsa(s: TreatmentFold, at: date, p: Protocol,
         explanations: list[Explanation]) -> tuple[float | None, bool | None]:
    w, h = s.weight, s.height
    if w is None or h is None:
        explanations.append(Explanation("bsa", "no body-surface area: needs a height and a "
                                               "weight"))
        return None, None
    bsa = r3(math.sqrt(h.value * w.value / 3600))
    stale = (at - w.on).days > p.anthropometry_max_age_days or \
        (at - h.on).days > p.anthropometry_max_age_days
    age = f"; stale: over {p.anthropometry_max_age_days} days old" if stale else ""
    explanations.append(Explanation(
        "bsa", f"Mosteller BSA {bsa:g} m2 from height {h.value:g} cm ({h.on.isoformat()}) "
               f"and weight {w.value:g} kg ({w.on.isoformat()}){age}",
        (h.event_id, w.event_id)))
    return bsa, stale
