"""Fact builders for the pamidronate and monitoring tests (no I/O).

Every builder returns a ``tracker.facts.Fact`` dated on a clinical date; the time of day
orders facts inside a day (labs at 08:00 before the 10:00 infusion by default). Positions
and event ids come from a counter, so ``ordered(...)`` gives the clinical order."""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from typing import Any

from events.vocabulary import (
    UNITS,
    AdverseEventRecorded,
    ComorbidityRecorded,
    EventData,
    ImagingRecorded,
    InfusionAdministered,
    LabResultRecorded,
    MedicationChanged,
    MedicationStarted,
    MedicationStopped,
    ProcedureRecorded,
    VisitRecorded,
)
from tracker.facts import Fact

_positions = itertools.count(1)

Day = date | str


def day(d: Day) -> date:
    return date.fromisoformat(d) if isinstance(d, str) else d


def fact(data: EventData, on: Day, *, hour: int = 9, minute: int = 0,
         event_id: str | None = None) -> Fact:
    n = next(_positions)
    d = day(on)
    # 09:00 UTC is the same clinical date in Europe/Madrid
    moment = datetime(d.year, d.month, d.day, hour, minute, tzinfo=UTC)
    return Fact(event_id or f"ev-{n}", type(data).__name__, data, moment, d, moment,
                "test", n)


def ordered(*groups: Fact | Iterable[Fact]) -> list[Fact]:
    """Flatten and sort into clinical order, as ``tracker.facts.facts`` does."""
    out: list[Fact] = []
    for g in groups:
        if isinstance(g, Fact):
            out.append(g)
        else:
            out.extend(g)
    return sorted(out, key=lambda f: (f.occurred_at, f.position))


def infusion(on: Day, dose_mg: float, weight_kg: float = 30.0, *, drug: str = "pamidronate",
             hour: int = 10, event_id: str | None = None, **extra: Any) -> Fact:
    data = InfusionAdministered(drug=drug, dose_mg=dose_mg, weight_kg=weight_kg,  # type: ignore[arg-type]
                                **extra)
    return fact(data, on, hour=hour, event_id=event_id)


def lab(on: Day, analyte: str, value: float, unit: str | None = None, *, hour: int = 8,
        event_id: str | None = None) -> Fact:
    data = LabResultRecorded(analyte=analyte, value=value,  # type: ignore[arg-type]
                             unit=unit or UNITS[analyte].canonical)
    return fact(data, on, hour=hour, event_id=event_id)


#: one analyte per group, normal values: satisfies all six baseline groups
FULL_PANEL: tuple[tuple[str, float], ...] = (
    ("haemoglobin", 125.0), ("phosphate", 1.4), ("calcium", 2.4),
    ("urine_calcium_creatinine", 0.5), ("vitamin_d_25oh", 75.0), ("alt", 20.0),
    ("creatinine", 40.0),
)


def panel(on: Day, *, hour: int = 8, without: Iterable[str] = ()) -> list[Fact]:
    skip = set(without)
    return [lab(on, a, v, hour=hour) for a, v in FULL_PANEL if a not in skip]


def started(on: Day, course_id: str = "pam1", *, drug: str = "pamidronate",
            regimen: str | None = None, hour: int = 7) -> Fact:
    data = MedicationStarted(course_id=course_id, drug=drug, regimen=regimen)  # type: ignore[arg-type]
    return fact(data, on, hour=hour)


def changed(on: Day, course_id: str = "pam1", *, regimen: str, hour: int = 7) -> Fact:
    return fact(MedicationChanged(course_id=course_id, regimen=regimen),  # type: ignore[arg-type]
                on, hour=hour)


def stopped(on: Day, course_id: str = "pam1", *, hour: int = 18) -> Fact:
    return fact(MedicationStopped(course_id=course_id), on, hour=hour)


def visit(on: Day, *, weight_kg: float | None = None, hour: int = 9) -> Fact:
    data = VisitRecorded(pain=False, swelling=False, functional_limitation=False,
                         weight_kg=weight_kg)
    return fact(data, on, hour=hour)


def comorbidity(on: Day, condition: str, *, hour: int = 9) -> Fact:
    return fact(ComorbidityRecorded(condition=condition), on, hour=hour)  # type: ignore[arg-type]


def adverse(on: Day, kind: str, *, symptomatic: bool | None = None,
            severity: str = "moderate", hour: int = 12) -> Fact:
    data = AdverseEventRecorded(kind=kind, severity=severity,  # type: ignore[arg-type]
                                symptomatic=symptomatic)
    return fact(data, on, hour=hour)


def procedure(on: Day, kind: str = "bone_surgery", *, hour: int = 9) -> Fact:
    return fact(ProcedureRecorded(procedure=kind), on, hour=hour)  # type: ignore[arg-type]


def renal_ultrasound(on: Day, *, hour: int = 11) -> Fact:
    return fact(ImagingRecorded(modality="renal_ultrasound"), on, hour=hour)


def induction(first: Day, weight_kg: float = 30.0) -> list[Fact]:
    """The first cycle: 0.5 then 1 and 1 mg/kg on three consecutive days."""
    d = day(first)
    return [infusion(d, weight_kg / 2, weight_kg),
            infusion(d + timedelta(days=1), weight_kg, weight_kg),
            infusion(d + timedelta(days=2), weight_kg, weight_kg)]


def cycle(first: Day, weight_kg: float = 30.0, doses: int = 3) -> list[Fact]:
    """A following quarterly cycle: 1 mg/kg a day on consecutive days."""
    d = day(first)
    return [infusion(d + timedelta(days=i), weight_kg, weight_kg) for i in range(doses)]


def quarterly_first_year(weight_kg: float = 30.0) -> list[Fact]:
    """2015: induction on 1-3 Jan, then 1-3 Apr, Jul, Oct (11.5 mg/kg in all)."""
    return [started("2015-01-01", regimen="quarterly"), *induction("2015-01-01", weight_kg),
            *cycle("2015-04-01", weight_kg), *cycle("2015-07-01", weight_kg),
            *cycle("2015-10-01", weight_kg)]
