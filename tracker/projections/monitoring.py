"""Monitoring around pamidronate and the immediate findings (clinical-rules.md §5).

A fold: ``evolve(state, fact)`` (``functools.singledispatch`` on the fact's data type)
collects infusions, labs, renal ultrasounds and supplement courses; ``finish(state, at,
protocol)`` turns them into monitoring items and findings at the clinical date ``at``.
Pure: no clock, no database.

Readings of the rules made here (**[reading]**):

- Dose numbers count every pamidronate infusion the patient received, in clinical order
  (lifetime), so ``baseline_labs`` concerns the first dose ever and ``post_dose_2_labs`` /
  ``post_dose_3_labs`` doses 2 and 3 ever.
- ``baseline_labs`` exists once a pamidronate course has started (``MedicationStarted``
  drug pamidronate) or a first dose was given, whichever is earlier; ``due_on`` is that date.
  Before the first dose it is ``satisfied`` when all six groups were collected within the
  30 days ending on ``at`` (a dose given today could rely on them), otherwise ``due`` —
  never ``overdue``, as nothing has been given yet; a course stopped with no dose given
  drops the item. Once the first dose is given the verdict is fixed: ``satisfied`` when
  all six groups were collected before it (``occurred_at`` up to the infusion's) within the
  30 days before its date (``first.on - 30 days`` included), otherwise ``overdue`` from the
  first dose's date for good (a baseline cannot be collected afterwards; ``missing`` names
  what was absent). The deviation ``baseline_labs_missing`` (pamidronate.py) names that dose.
- Post-dose labs count when collected strictly after the infusion (``occurred_at`` later)
  and on or before the dose date + 14 days. Labs collected after that never satisfy the
  item: it stays ``overdue``.
- ``renal_ultrasound``: one item per *episode*. An episode starts at a urine Ca/Cr result
  above 2.0 mmol/mmol (canonical value, so mg/mg results are already × 2.822) not covered
  by an earlier ultrasound; the first ``ImagingRecorded`` renal_ultrasound dated on or after
  that result closes it and also covers every high result dated up to the ultrasound's
  date. ``cause_event_ids`` lists the episode's high results; ``missing`` is
  ``["renal_ultrasound"]`` until it is satisfied.
- Findings. ``hypocalcaemia``: every ionized calcium below 1 mmol/L and every
  ``AdverseEventRecorded`` hypocalcaemia with ``symptomatic`` true (one finding per event,
  so alert dedupe keys stay stable). ``supplement_suggested`` is current advice, so it uses
  the *latest* results up to ``at``: the latest total calcium below ``calcium_low_below``,
  or the latest 25-OH vitamin D below 50 nmol/L while the latest urine Ca/Cr is known and
  at most 2.0 mmol/mmol ("normal" must be documented: no urine Ca/Cr result, no vitamin D
  suggestion). Ionized calcium only drives the urgent finding. It is suppressed while a
  ``calcium`` or ``vitamin_d`` course is open. QTc changes cannot be recorded in the
  interchange contract (no QTc event or adverse-event kind; ``other`` carries no label),
  so that trigger is not evaluated.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from functools import reduce, singledispatch
from typing import Any, Literal

from events.vocabulary import (
    AdverseEventRecorded,
    ImagingRecorded,
    InfusionAdministered,
    LabResultRecorded,
    MedicationStarted,
    MedicationStopped,
    to_canonical,
)
from tracker.facts import Fact
from tracker.projections.common import Explanation, Finding, replace
from tracker.protocol import Protocol

#: Lab groups in the order ``missing`` lists them.
LAB_GROUPS: tuple[str, ...] = (
    "haemogram", "ions", "urine_calcium_creatinine", "vitamin_d", "liver", "kidney",
)
BASELINE_GROUPS: tuple[str, ...] = LAB_GROUPS
#: After doses 2 and 3: liver is baseline only **[reading]** (clinical-rules.md §5).
POST_DOSE_GROUPS: tuple[str, ...] = (
    "haemogram", "ions", "urine_calcium_creatinine", "vitamin_d", "kidney",
)
POST_DOSE_NUMBERS: tuple[int, ...] = (2, 3)
SUPPLEMENT_DRUGS = frozenset({"calcium", "vitamin_d"})

Status = Literal["not_due", "due", "overdue", "satisfied"]


def groups_present(analytes: Iterable[str]) -> set[str]:
    """The lab groups a set of analytes satisfies (§5 table)."""
    a = set(analytes)
    present: set[str] = set()
    if a & {"haemoglobin", "leukocytes", "platelets"}:
        present.add("haemogram")
    if "phosphate" in a and a & {"calcium", "ionized_calcium"}:
        present.add("ions")
    if "urine_calcium_creatinine" in a:
        present.add("urine_calcium_creatinine")
    if "vitamin_d_25oh" in a:
        present.add("vitamin_d")
    if a & {"alt", "ast"}:
        present.add("liver")
    if "creatinine" in a:
        present.add("kidney")
    return present


def missing_groups(analytes: Iterable[str],
                   required: Sequence[str] = LAB_GROUPS) -> list[str]:
    """The required groups the analytes leave unsatisfied, in ``required`` order."""
    present = groups_present(analytes)
    return [g for g in required if g not in present]


@dataclass(frozen=True, slots=True)
class LabSample:
    """One lab result, reduced to what monitoring needs (value in the canonical unit)."""

    event_id: str
    analyte: str
    on: date
    occurred_at: datetime
    value: float


def lab_sample(fact: Fact) -> LabSample:
    data = fact.data
    assert isinstance(data, LabResultRecorded)
    value = data.canonical_value
    if value is None:
        value = to_canonical(data.analyte, data.value, data.unit)
    return LabSample(fact.event_id, data.analyte, fact.on, fact.occurred_at, value)


def baseline_missing(labs: Iterable[LabSample], end_on: date, end_at: datetime | None,
                     protocol: Protocol) -> list[str]:
    """Baseline groups absent among labs collected within the 30 days before ``end_on``
    (``end_on - 30 days`` .. ``end_on`` inclusive) and, when ``end_at`` is given, not after
    that instant (the first infusion)."""
    start = end_on - timedelta(days=protocol.baseline_labs_window_days)
    used = [lab.analyte for lab in labs
            if start <= lab.on <= end_on and (end_at is None or lab.occurred_at <= end_at)]
    return missing_groups(used, BASELINE_GROUPS)


@dataclass(frozen=True, slots=True)
class DoseRef:
    event_id: str
    on: date
    occurred_at: datetime


@dataclass(frozen=True, slots=True)
class MonitoringItem:
    item: str
    status: Status
    due_on: date | None
    overdue_on: date | None
    missing: list[str]
    cause_event_ids: list[str]

    def as_json(self) -> dict[str, Any]:
        return {"item": self.item, "status": self.status,
                "due_on": self.due_on.isoformat() if self.due_on else None,
                "missing": list(self.missing)}


@dataclass(frozen=True, slots=True)
class MonitoringResult:
    items: list[MonitoringItem]
    findings: list[Finding]
    explanations: list[Explanation] = field(default_factory=list)

    def as_json(self) -> list[dict[str, Any]]:
        """The contract's ``monitoring`` array."""
        return [i.as_json() for i in self.items]


@dataclass(frozen=True, slots=True)
class MonitoringState:
    doses: tuple[DoseRef, ...] = ()
    course_starts: tuple[date, ...] = ()
    open_pamidronate: frozenset[str] = frozenset()
    open_supplements: frozenset[str] = frozenset()
    labs: tuple[LabSample, ...] = ()
    ultrasounds: tuple[DoseRef, ...] = ()
    hypocalcaemia_events: tuple[DoseRef, ...] = ()


# ---------------------------------------------------------------- the fold

@singledispatch
def _apply(data: object, state: MonitoringState, fact: Fact) -> MonitoringState:
    return state


@_apply.register
def _(data: InfusionAdministered, state: MonitoringState, fact: Fact) -> MonitoringState:
    if data.drug != "pamidronate":
        return state
    return replace(state, doses=(*state.doses, DoseRef(fact.event_id, fact.on, fact.occurred_at)))


@_apply.register
def _(data: MedicationStarted, state: MonitoringState, fact: Fact) -> MonitoringState:
    if data.drug == "pamidronate":
        return replace(state, course_starts=(*state.course_starts, fact.on),
                       open_pamidronate=state.open_pamidronate | {data.course_id})
    if data.drug in SUPPLEMENT_DRUGS:
        return replace(state, open_supplements=state.open_supplements | {data.course_id})
    return state


@_apply.register
def _(data: MedicationStopped, state: MonitoringState, fact: Fact) -> MonitoringState:
    return replace(state, open_pamidronate=state.open_pamidronate - {data.course_id},
                   open_supplements=state.open_supplements - {data.course_id})


@_apply.register
def _(data: LabResultRecorded, state: MonitoringState, fact: Fact) -> MonitoringState:
    return replace(state, labs=(*state.labs, lab_sample(fact)))


@_apply.register
def _(data: ImagingRecorded, state: MonitoringState, fact: Fact) -> MonitoringState:
    if data.modality != "renal_ultrasound":
        return state
    ref = DoseRef(fact.event_id, fact.on, fact.occurred_at)
    return replace(state, ultrasounds=(*state.ultrasounds, ref))


@_apply.register
def _(data: AdverseEventRecorded, state: MonitoringState, fact: Fact) -> MonitoringState:
    if data.kind != "hypocalcaemia" or data.symptomatic is not True:
        return state
    ref = DoseRef(fact.event_id, fact.on, fact.occurred_at)
    return replace(state, hypocalcaemia_events=(*state.hypocalcaemia_events, ref))


def evolve(state: MonitoringState, fact: Fact) -> MonitoringState:
    """One fact into the state, dispatched on the type of ``fact.data``."""
    return _apply(fact.data, state, fact)


# ---------------------------------------------------------------- items

def _status(at: date, due_on: date, overdue_on: date | None, satisfied: bool) -> Status:
    if satisfied:
        return "satisfied"
    if at < due_on:
        return "not_due"
    if overdue_on is not None and at >= overdue_on:
        return "overdue"
    return "due"


def _baseline_item(state: MonitoringState, at: date,
                   protocol: Protocol) -> MonitoringItem | None:
    starts = [*state.course_starts, *(d.on for d in state.doses[:1])]
    if not starts:
        return None
    due_on = min(starts)
    if not state.doses:
        if not state.open_pamidronate:
            return None  # course stopped before any dose: nothing to prepare
        missing = baseline_missing(state.labs, at, None, protocol)
        return MonitoringItem("baseline_labs", _status(at, due_on, None, not missing),
                              due_on, None, missing, [])
    first = state.doses[0]
    missing = baseline_missing(state.labs, first.on, first.occurred_at, protocol)
    return MonitoringItem("baseline_labs", _status(at, due_on, first.on, not missing),
                          due_on, first.on, missing, [first.event_id])


def _post_dose_item(n: int, dose: DoseRef, labs: Sequence[LabSample], at: date,
                    protocol: Protocol) -> MonitoringItem:
    last_day = dose.on + timedelta(days=protocol.post_dose_labs_window_days)
    used = [lab.analyte for lab in labs
            if lab.occurred_at > dose.occurred_at and lab.on <= last_day]
    missing = missing_groups(used, POST_DOSE_GROUPS)
    due_on = dose.on + timedelta(days=1)
    overdue_on = dose.on + timedelta(days=protocol.post_dose_labs_overdue_days)
    return MonitoringItem(f"post_dose_{n}_labs", _status(at, due_on, overdue_on, not missing),
                          due_on, overdue_on, missing, [dose.event_id])


def _renal_items(state: MonitoringState, at: date, protocol: Protocol) -> list[MonitoringItem]:
    threshold = protocol.urine_ca_cr_threshold_mmol_mmol
    high = [lab for lab in state.labs
            if lab.analyte == "urine_calcium_creatinine" and lab.value > threshold]
    items: list[MonitoringItem] = []
    i = 0
    while i < len(high):
        start = high[i]
        scan = next((u for u in state.ultrasounds if u.on >= start.on), None)
        causes = [lab.event_id for lab in high[i:] if scan is None or lab.on <= scan.on]
        due_on = start.on
        overdue_on = due_on + timedelta(days=protocol.renal_ultrasound_overdue_days)
        satisfied = scan is not None
        items.append(MonitoringItem(
            "renal_ultrasound", _status(at, due_on, overdue_on, satisfied), due_on, overdue_on,
            [] if satisfied else ["renal_ultrasound"],
            causes + ([scan.event_id] if scan is not None else [])))
        if scan is None:
            break
        i += len(causes)  # the high results up to the scan's date are covered by it
    return items


# ---------------------------------------------------------------- findings

def _latest(labs: Sequence[LabSample], analyte: str) -> LabSample | None:
    return next((lab for lab in reversed(labs) if lab.analyte == analyte), None)


def _findings(state: MonitoringState, protocol: Protocol) -> list[Finding]:
    found: list[Finding] = []
    for lab in state.labs:
        if lab.analyte == "ionized_calcium" and lab.value < protocol.ionized_calcium_urgent_below:
            found.append(Finding("hypocalcaemia", lab.on, lab.event_id,
                                 "ionized calcium below "
                                 f"{protocol.ionized_calcium_urgent_below:g} mmol/L: "
                                 "calcium treatment recommended"))
    for ev in state.hypocalcaemia_events:
        found.append(Finding("hypocalcaemia", ev.on, ev.event_id,
                             "symptomatic hypocalcaemia: calcium treatment recommended"))
    if not state.open_supplements:
        calcium = _latest(state.labs, "calcium")
        if calcium is not None and calcium.value < protocol.calcium_low_below:
            found.append(Finding("supplement_suggested", calcium.on, calcium.event_id,
                                 "low calcium: calcium and vitamin D maintenance suggested"))
        vit_d = _latest(state.labs, "vitamin_d_25oh")
        ratio = _latest(state.labs, "urine_calcium_creatinine")
        if vit_d is not None and vit_d.value < protocol.vitamin_d_low_below \
                and ratio is not None and ratio.value <= protocol.urine_ca_cr_threshold_mmol_mmol:
            found.append(Finding("supplement_suggested", vit_d.on, vit_d.event_id,
                                 "low 25-OH vitamin D with normal urine calcium/creatinine: "
                                 "calcium and vitamin D maintenance suggested"))
    found.sort(key=lambda f: f.on)
    return found


def _explain(items: Sequence[MonitoringItem]) -> list[Explanation]:
    out: list[Explanation] = []
    for it in items:
        text = f"{it.item} is {it.status}"
        if it.due_on:
            text += f", due from {it.due_on.isoformat()}"
        if it.overdue_on:
            text += f", overdue from {it.overdue_on.isoformat()}"
        if it.missing:
            text += f"; missing: {', '.join(it.missing)}"
        out.append(Explanation(f"monitoring.{it.item}", text, tuple(it.cause_event_ids)))
    return out


def finish(state: MonitoringState, at: date, protocol: Protocol) -> MonitoringResult:
    items: list[MonitoringItem] = []
    baseline = _baseline_item(state, at, protocol)
    if baseline is not None:
        items.append(baseline)
    for n in POST_DOSE_NUMBERS:
        if len(state.doses) >= n:
            items.append(_post_dose_item(n, state.doses[n - 1], state.labs, at, protocol))
    items.extend(_renal_items(state, at, protocol))
    return MonitoringResult(items, _findings(state, protocol), _explain(items))


def monitoring(facts: Iterable[Fact], at: date, protocol: Protocol) -> MonitoringResult:
    """Monitoring items and immediate findings at ``at`` (facts after ``at`` are ignored)."""
    state = reduce(evolve, (f for f in facts if f.on <= at), MonitoringState())
    return finish(state, at, protocol)
