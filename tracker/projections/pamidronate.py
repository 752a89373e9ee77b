"""Pamidronate exposure (clinical-rules.md §4, seed Table 3).

A fold: ``evolve(state, fact)`` (``functools.singledispatch`` on the fact's data type)
collects infusions, courses, weights, contraindications, bone surgery and labs;
``finish(state, at, protocol)`` computes doses, cycles, totals, the rolling year, the
next dose and the deviations at the clinical date ``at``. Pure: no clock, no database.

**Exactness.** mg/kg values and every sum are exact rationals (``fractions.Fraction``)
built from the decimal numbers as entered (``Fraction(repr(x))``: 15.1 mg / 30.2 kg is
exactly 1/2), and so are the protocol limits. The quarterly first year (0.5 + 1 + 1 +
3 × 3) therefore totals exactly 11.5 and is not a deviation; floats appear only in the
reported, rounded numbers.

Readings of the rules made here (**[reading]**):

- Only ``InfusionAdministered`` with drug ``pamidronate`` is a dose; dose numbers,
  cycles and "first-ever dose" count the patient's whole pamidronate history (lifetime,
  across courses). Any infusion's ``weight_kg`` and any visit's ``weight_kg`` update the
  latest weight.
- Tolerances: a per-kg deviation only when strictly above ``limit × (1 + 5%)`` (0.525 and
  1.05 mg/kg); the 60 mg maximum is absolute (the rules give the 5% tolerance to *per-kg*
  doses only): strictly above 60 mg; the yearly deviation strictly above 11.5 + 0.01.
- ``annual_cap_exceeded`` uses, for each dose, the doses dated in the 365 days ending on
  its date that were given up to and including it (clinical order).
- The course: the latest-started open pamidronate course; with no course event at all,
  infusions form an implicit open course with undeclared regimen. ``next_due`` is ``None``
  when every declared course is stopped (even if infusions went on), or when nothing
  exists. A course with no dose given since its start: ``next_due`` = its start date.
- "Inside a cycle": the latest cycle has fewer than 3 doses and it is the first cycle ever
  or the regimen is quarterly: next day after the last dose, even when that day has passed
  (the dose is then overdue). Otherwise monthly: last dose + 1 month; quarterly: first day
  of the last cycle + 3 months; undeclared regimen: ``None`` (no schedule to follow).
- The next planned dose is the first dose (0.5 mg/kg) when none was ever given, otherwise
  1 mg/kg; either is capped at 60 mg at the latest weight. With no weight on record the
  60 mg cap cannot apply and the per-kg dose is used as is.
- ``pamidronate_contraindicated``: a dose is due when ``next_due <= at + dose_due_lead_days``
  (the ``pamidronate_dose_due`` reminder starts the day before), and a
  ``ComorbidityRecorded`` ``severe_kidney_failure`` or ``enterocolitis`` is on record
  (one finding per such event, dated ``next_due``). No ``AdverseEventRecorded`` kind names
  either condition (``diarrhoea`` is a listed side effect, not enterocolitis; ``other``
  carries no label), so adverse events never count.
- ``bone_surgery_after_induction``: a ``ProcedureRecorded`` bone_surgery dated after the
  last dose of the first cycle; the deviation names the procedure event.
- ``baseline_labs_missing``: see ``monitoring.baseline_missing`` (labs up to the first
  infusion, dated within the 30 days before it).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from fractions import Fraction
from functools import reduce, singledispatch
from typing import Any

from events.vocabulary import (
    ComorbidityRecorded,
    InfusionAdministered,
    LabResultRecorded,
    MedicationChanged,
    MedicationStarted,
    MedicationStopped,
    ProcedureRecorded,
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
from tracker.projections.monitoring import LabSample, baseline_missing, lab_sample
from tracker.protocol import Protocol

#: doses in the first cycle and in a quarterly cycle (Table 3: days 1-3)
CYCLE_DOSES = 3
CONTRAINDICATIONS = frozenset({"severe_kidney_failure", "enterocolitis"})


def exact(x: float | int | Fraction) -> Fraction:
    """The exact rational of a number as entered: floats through their shortest repr."""
    if isinstance(x, Fraction | int):
        return Fraction(x)
    return Fraction(repr(float(x)))


# ---------------------------------------------------------------- records

@dataclass(frozen=True, slots=True)
class Infusion:
    event_id: str
    on: date
    occurred_at: datetime
    dose_mg: float
    weight_kg: float


@dataclass(frozen=True, slots=True)
class Course:
    course_id: str
    started_on: date
    regimen: str | None
    stopped_on: date | None = None


@dataclass(frozen=True, slots=True)
class Dose:
    """One pamidronate infusion. ``number`` counts doses over the whole history,
    ``cycle`` the cycle it belongs to, ``day_in_cycle`` its rank inside the cycle."""

    event_id: str
    on: date
    occurred_at: datetime
    dose_mg: float
    weight_kg: float
    mg_per_kg: float
    cycle: int
    number: int
    day_in_cycle: int
    exact_mg_per_kg: Fraction = field(repr=False, compare=False)


@dataclass(frozen=True, slots=True)
class CapCheck:
    """The rolling-year total on ``on`` with a planned dose added."""

    on: date
    window_start: date
    rolling_mg_per_kg: Fraction
    planned_mg_per_kg: Fraction
    total_mg_per_kg: Fraction
    limit_mg_per_kg: Fraction  # cap + tolerance
    exceeds: bool
    event_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class PamidronateExposure:
    at: date
    doses: list[Dose]
    cycles: int
    lifetime_mg: float
    lifetime_mg_per_kg: float
    rolling_year_mg_per_kg: float
    annual_cap_mg_per_kg: float
    remaining_mg_per_kg: float
    regimen: str | None
    course_open: bool
    next_due: date | None
    planned_mg_per_kg: float | None
    next_dose_exceeds_cap: bool | None
    next_dose_fits_on: date | None
    deviations: list[Deviation]
    findings: list[Finding]
    explanations: list[Explanation]

    def as_json(self) -> dict[str, Any]:
        """Exactly the contract's ``pamidronate`` object."""
        return {
            "doses": len(self.doses),
            "cycles": self.cycles,
            "lifetime_mg": r3(self.lifetime_mg),
            "lifetime_mg_per_kg": r3(self.lifetime_mg_per_kg),
            "rolling_year_mg_per_kg": r3(self.rolling_year_mg_per_kg),
            "annual_cap_mg_per_kg": r3(self.annual_cap_mg_per_kg),
            "remaining_mg_per_kg": r3(self.remaining_mg_per_kg),
            "next_due": self.next_due.isoformat() if self.next_due else None,
            "next_dose_exceeds_cap": self.next_dose_exceeds_cap,
            "next_dose_fits_on": (self.next_dose_fits_on.isoformat()
                                  if self.next_dose_fits_on else None),
            "deviations": [{"event_id": d.event_id, "kind": d.kind, "detail": d.detail}
                           for d in self.deviations],
        }


# ---------------------------------------------------------------- the fold

@dataclass(frozen=True, slots=True)
class PamidronateState:
    infusions: tuple[Infusion, ...] = ()
    courses: tuple[Course, ...] = ()
    weight_kg: float | None = None
    weight_event_id: str | None = None
    contraindications: tuple[tuple[str, str], ...] = ()  # (event_id, condition)
    surgeries: tuple[tuple[str, date], ...] = ()  # (event_id, on)
    labs: tuple[LabSample, ...] = ()


@singledispatch
def _apply(data: object, state: PamidronateState, fact: Fact) -> PamidronateState:
    return state


@_apply.register
def _(data: InfusionAdministered, state: PamidronateState, fact: Fact) -> PamidronateState:
    state = replace(state, weight_kg=data.weight_kg, weight_event_id=fact.event_id)
    if data.drug != "pamidronate":
        return state
    inf = Infusion(fact.event_id, fact.on, fact.occurred_at, data.dose_mg, data.weight_kg)
    return replace(state, infusions=(*state.infusions, inf))


@_apply.register
def _(data: VisitRecorded, state: PamidronateState, fact: Fact) -> PamidronateState:
    if data.weight_kg is None:
        return state
    return replace(state, weight_kg=data.weight_kg, weight_event_id=fact.event_id)


@_apply.register
def _(data: MedicationStarted, state: PamidronateState, fact: Fact) -> PamidronateState:
    if data.drug != "pamidronate":
        return state
    others = tuple(c for c in state.courses if c.course_id != data.course_id)
    return replace(state, courses=(*others, Course(data.course_id, fact.on, data.regimen)))


@_apply.register
def _(data: MedicationChanged, state: PamidronateState, fact: Fact) -> PamidronateState:
    if data.regimen is None:
        return state
    courses = tuple(replace(c, regimen=data.regimen) if c.course_id == data.course_id else c
                    for c in state.courses)
    return replace(state, courses=courses)


@_apply.register
def _(data: MedicationStopped, state: PamidronateState, fact: Fact) -> PamidronateState:
    courses = tuple(replace(c, stopped_on=fact.on) if c.course_id == data.course_id else c
                    for c in state.courses)
    return replace(state, courses=courses)


@_apply.register
def _(data: ComorbidityRecorded, state: PamidronateState, fact: Fact) -> PamidronateState:
    if data.condition not in CONTRAINDICATIONS:
        return state
    return replace(state, contraindications=(*state.contraindications,
                                             (fact.event_id, data.condition)))


@_apply.register
def _(data: ProcedureRecorded, state: PamidronateState, fact: Fact) -> PamidronateState:
    if data.procedure != "bone_surgery":
        return state
    return replace(state, surgeries=(*state.surgeries, (fact.event_id, fact.on)))


@_apply.register
def _(data: LabResultRecorded, state: PamidronateState, fact: Fact) -> PamidronateState:
    return replace(state, labs=(*state.labs, lab_sample(fact)))


def evolve(state: PamidronateState, fact: Fact) -> PamidronateState:
    """One fact into the state, dispatched on the type of ``fact.data``."""
    return _apply(fact.data, state, fact)


# ---------------------------------------------------------------- pure helpers

def number_doses(infusions: Sequence[Infusion], protocol: Protocol) -> list[Dose]:
    """Dose and cycle numbers: an infusion at most ``cycle_gap_days`` after the previous
    one continues its cycle, a longer gap starts a new cycle."""
    doses: list[Dose] = []
    cycle, rank = 0, 0
    for i, inf in enumerate(infusions):
        if i == 0 or (inf.on - infusions[i - 1].on).days > protocol.cycle_gap_days:
            cycle, rank = cycle + 1, 0
        rank += 1
        per_kg = exact(inf.dose_mg) / exact(inf.weight_kg)
        doses.append(Dose(inf.event_id, inf.on, inf.occurred_at, inf.dose_mg, inf.weight_kg,
                          float(per_kg), cycle, i + 1, rank, per_kg))
    return doses


def window_start(on: date, protocol: Protocol) -> date:
    """First day of the rolling year ending on (and including) ``on``."""
    return on - timedelta(days=protocol.rolling_window_days - 1)


def rolling_total(doses: Iterable[Dose], on: date, protocol: Protocol) -> Fraction:
    start = window_start(on, protocol)
    return sum((d.exact_mg_per_kg for d in doses if start <= d.on <= on), Fraction(0))


def cap_limit(protocol: Protocol) -> Fraction:
    return exact(protocol.annual_cap_mg_per_kg) + exact(protocol.cap_tolerance_mg_per_kg)


def cap_check(doses: Sequence[Dose], planned_mg_per_kg: float | Fraction, on: date,
              protocol: Protocol) -> CapCheck:
    """Would ``planned_mg_per_kg`` given on ``on`` push the rolling-year total (doses
    dated ``on - 364 days`` .. ``on``) strictly above the cap plus its tolerance?"""
    start = window_start(on, protocol)
    inside = [d for d in doses if start <= d.on <= on]
    rolling = sum((d.exact_mg_per_kg for d in inside), Fraction(0))
    planned = exact(planned_mg_per_kg)
    limit = cap_limit(protocol)
    total = rolling + planned
    return CapCheck(on, start, rolling, planned, total, limit, total > limit,
                    tuple(d.event_id for d in inside))


def first_fit(doses: Sequence[Dose], planned_mg_per_kg: float | Fraction, start: date,
              protocol: Protocol) -> date | None:
    """The first date on or after ``start`` on which the planned dose fits under the cap
    (the total only falls when a dose leaves the window, so those dates are the
    candidates); ``None`` if it never fits."""
    leave = {d.on + timedelta(days=protocol.rolling_window_days) for d in doses}
    for day in sorted({start} | {d for d in leave if d > start}):
        if not cap_check(doses, planned_mg_per_kg, day, protocol).exceeds:
            return day
    return None


def planned_dose(doses: Sequence[Dose], weight_kg: float | None,
                 protocol: Protocol) -> Fraction:
    """mg/kg of the next planned dose: the first dose or 1 mg/kg, capped at 60 mg."""
    per_kg = exact(protocol.max_dose_mg_per_kg if doses else protocol.first_dose_mg_per_kg)
    if weight_kg is None:
        return per_kg
    return min(per_kg, exact(protocol.max_dose_mg) / exact(weight_kg))


def current_course(courses: Sequence[Course],
                   doses: Sequence[Dose]) -> tuple[Course | None, bool]:
    """The course the next dose belongs to and whether it is open."""
    if not courses:
        if not doses:
            return None, False
        return Course("(undeclared)", doses[0].on, None), True
    open_ = [c for c in courses if c.stopped_on is None]
    if open_:
        return max(open_, key=lambda c: c.started_on), True
    return courses[-1], False


def next_due(doses: Sequence[Dose], course: Course, protocol: Protocol) -> tuple[date | None, str]:
    """The next dose date of an open course and the reason, in words."""
    mine = [d for d in doses if d.on >= course.started_on]
    if not mine:
        return course.started_on, "course started, no dose given yet"
    last = mine[-1]
    cycle = [d for d in doses if d.cycle == last.cycle]
    if len(cycle) < CYCLE_DOSES and (last.cycle == 1 or course.regimen == "quarterly"):
        return last.on + timedelta(days=1), f"inside cycle {last.cycle}: the next day"
    if course.regimen == "monthly":
        return (add_months(last.on, protocol.monthly_interval_months),
                "monthly: last dose + 1 month")
    if course.regimen == "quarterly":
        return (add_months(cycle[0].on, protocol.quarterly_interval_months),
                "quarterly: first day of the last cycle + 3 months")
    return None, "regimen not declared: no schedule after the first cycle"


# ---------------------------------------------------------------- deviations

def _dose_deviations(doses: Sequence[Dose], protocol: Protocol) -> list[Deviation]:
    tol = 1 + exact(protocol.dose_tolerance)
    first_limit = exact(protocol.first_dose_mg_per_kg) * tol
    kg_limit = exact(protocol.max_dose_mg_per_kg) * tol
    out: list[Deviation] = []
    for i, d in enumerate(doses):
        per_kg = f"{r3(d.mg_per_kg):g} mg/kg ({d.dose_mg:g} mg at {d.weight_kg:g} kg)"
        if d.number == 1 and d.exact_mg_per_kg > first_limit:
            out.append(Deviation(d.event_id, "first_dose_above_protocol",
                                 f"first dose {per_kg}; protocol "
                                 f"{protocol.first_dose_mg_per_kg:g} mg/kg", d.on))
        if d.exact_mg_per_kg > kg_limit:
            out.append(Deviation(d.event_id, "dose_above_1_mg_per_kg",
                                 f"dose {per_kg}; maximum "
                                 f"{protocol.max_dose_mg_per_kg:g} mg/kg", d.on))
        if exact(d.dose_mg) > exact(protocol.max_dose_mg):
            out.append(Deviation(d.event_id, "dose_above_60_mg",
                                 f"dose {d.dose_mg:g} mg; maximum {protocol.max_dose_mg:g} mg",
                                 d.on))
        total = rolling_total(doses[: i + 1], d.on, protocol)
        if total > cap_limit(protocol):
            out.append(Deviation(d.event_id, "annual_cap_exceeded",
                                 f"{r3(float(total)):g} mg/kg in the 365 days ending "
                                 f"{d.on.isoformat()}; cap "
                                 f"{protocol.annual_cap_mg_per_kg:g} mg/kg/year", d.on))
    return out


def _other_deviations(state: PamidronateState, doses: Sequence[Dose],
                      protocol: Protocol) -> list[Deviation]:
    if not doses:
        return []
    out: list[Deviation] = []
    first = doses[0]
    missing = baseline_missing(state.labs, first.on, first.occurred_at, protocol)
    if missing:
        out.append(Deviation(first.event_id, "baseline_labs_missing",
                             f"first dose given without {', '.join(missing)} in the "
                             f"{protocol.baseline_labs_window_days} days before", first.on))
    induction_end = max(d.on for d in doses if d.cycle == 1)
    for event_id, on in state.surgeries:
        if on > induction_end:
            out.append(Deviation(event_id, "bone_surgery_after_induction",
                                 f"bone surgery on {on.isoformat()} after the first cycle "
                                 f"(ended {induction_end.isoformat()})", on))
    return out


# ---------------------------------------------------------------- finish

def finish(state: PamidronateState, at: date, protocol: Protocol) -> PamidronateExposure:
    doses = number_doses(state.infusions, protocol)
    cap = exact(protocol.annual_cap_mg_per_kg)
    rolling = rolling_total(doses, at, protocol)
    remaining = max(Fraction(0), cap - rolling)
    course, is_open = current_course(state.courses, doses)
    regimen = course.regimen if course else None
    due: date | None = None
    why = "no pamidronate course or dose" if course is None else "course stopped"
    if course is not None and is_open:
        due, why = next_due(doses, course, protocol)

    explanations = [
        Explanation("pamidronate.doses",
                    f"{len(doses)} doses in {doses[-1].cycle if doses else 0} cycles",
                    tuple(d.event_id for d in doses)),
        Explanation("pamidronate.rolling_year",
                    f"{r3(float(rolling)):g} mg/kg from {window_start(at, protocol).isoformat()}"
                    f" to {at.isoformat()}; cap {protocol.annual_cap_mg_per_kg:g}",
                    tuple(d.event_id for d in doses
                          if window_start(at, protocol) <= d.on <= at)),
        Explanation("pamidronate.next_due",
                    f"{due.isoformat() if due else 'none'}: {why}",
                    tuple(d.event_id for d in doses[-1:])),
    ]

    planned: Fraction | None = None
    exceeds: bool | None = None
    fits_on: date | None = None
    if due is not None:
        planned = planned_dose(doses, state.weight_kg, protocol)
        check = cap_check(doses, planned, due, protocol)
        exceeds = check.exceeds
        fits_on = first_fit(doses, planned, due, protocol)
        explanations.append(Explanation(
            "pamidronate.cap_check",
            f"on {due.isoformat()}: {r3(float(check.rolling_mg_per_kg)):g} mg/kg in the window"
            f" + planned {r3(float(planned)):g} mg/kg = {r3(float(check.total_mg_per_kg)):g}"
            f" against {r3(float(check.limit_mg_per_kg)):g}; fits on "
            f"{fits_on.isoformat() if fits_on else 'never'}",
            check.event_ids + ((state.weight_event_id,) if state.weight_event_id else ())))

    findings: list[Finding] = []
    if due is not None and due <= at + timedelta(days=protocol.dose_due_lead_days):
        for event_id, condition in state.contraindications:
            findings.append(Finding("pamidronate_contraindicated", due, event_id,
                                    f"contraindicated: review ({condition})"))

    deviations = sorted(_dose_deviations(doses, protocol)
                        + _other_deviations(state, doses, protocol), key=lambda d: d.on)
    explanations.extend(Explanation(f"deviation.{d.kind}", d.detail, (d.event_id,))
                        for d in deviations)
    return PamidronateExposure(
        at=at, doses=doses, cycles=doses[-1].cycle if doses else 0,
        lifetime_mg=float(sum((exact(d.dose_mg) for d in doses), Fraction(0))),
        lifetime_mg_per_kg=float(sum((d.exact_mg_per_kg for d in doses), Fraction(0))),
        rolling_year_mg_per_kg=float(rolling),
        annual_cap_mg_per_kg=protocol.annual_cap_mg_per_kg,
        remaining_mg_per_kg=float(remaining), regimen=regimen, course_open=is_open,
        next_due=due, planned_mg_per_kg=float(planned) if planned is not None else None,
        next_dose_exceeds_cap=exceeds, next_dose_fits_on=fits_on,
        deviations=deviations, findings=findings, explanations=explanations)


def pamidronate_exposure(facts: Iterable[Fact], at: date,
                         protocol: Protocol) -> PamidronateExposure:
    """Pamidronate exposure at ``at`` (facts after ``at`` are ignored)."""
    state = reduce(evolve, (f for f in facts if f.on <= at), PamidronateState())
    return finish(state, at, protocol)
