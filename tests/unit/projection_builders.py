"""A tiny in-memory patient log for the projection tests (course, diagnosis, treatment).

``Log`` records events the way the store would hand them to ``tracker.facts.facts``:
each with a position, an event id, a clinical time (noon UTC of the given day unless a
time is given, so the clinical date in Madrid is that day) and a recorder. ``log.facts(at)``
runs the real ``facts()`` filter and ordering, so the projections see what production sees.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from typing import Any

from events.vocabulary import (
    BiopsyRecorded,
    ComorbidityRecorded,
    DiagnosisAssessed,
    EventData,
    ImagingRecorded,
    InfusionAdministered,
    MedicationChanged,
    MedicationStarted,
    MedicationStopped,
    PatientEnrolled,
    VisitRecorded,
)
from tracker.facts import Fact, facts


def d(text: str) -> date:
    """``d("2015-03-10")``: dates in tests read like the rules."""
    return date.fromisoformat(text)


@dataclass(frozen=True)
class FakeEvent:
    """The attributes of tracker.facts.LoggedEvent, nothing more."""

    position: int
    event_id: str
    type: str
    occurred_at: datetime
    occurred_on: date
    recorded_at: datetime
    recorded_by: str
    data: EventData


class Log:
    """Append events in any order; ``facts(at)`` filters and sorts them like production."""

    def __init__(self) -> None:
        self.events: list[FakeEvent] = []

    def add(self, on: str | date, data: EventData, *, by: str = "dr.ruiz",
            at_time: time = time(12, 0)) -> str:
        day = d(on) if isinstance(on, str) else on
        position = len(self.events) + 1
        event_id = f"00000000-0000-4000-8000-{position:012d}"
        moment = datetime.combine(day, at_time, tzinfo=UTC)
        self.events.append(FakeEvent(position, event_id, type(data).__name__, moment, day,
                                     moment, by, data))
        return event_id

    def facts(self, at: str | date) -> list[Fact]:
        day = d(at) if isinstance(at, str) else at
        return facts(self.events, at=day)

    # -- one helper per event type the projections read -------------------------------

    def enrol(self, symptom_onset: str | None = None, *, on: str = "2014-01-01",
              birth_date: str = "2004-05-05") -> str:
        return self.add(on, PatientEnrolled(
            birth_date=d(birth_date), sex="female",
            symptom_onset=d(symptom_onset) if symptom_onset else None))

    def visit(self, on: str, *, pain: bool = False, swelling: bool = False,
              functional_limitation: bool = False, symptom_free_since: str | None = None,
              by: str = "dr.ruiz", at_time: time = time(12, 0), **extra: Any) -> str:
        if symptom_free_since is not None:
            extra["symptom_free_since"] = d(symptom_free_since)
        return self.add(on, VisitRecorded(pain=pain, swelling=swelling,
                                          functional_limitation=functional_limitation,
                                          **extra), by=by, at_time=at_time)

    def symptomatic(self, on: str, **extra: Any) -> str:
        return self.visit(on, pain=True, **extra)

    def quiet(self, on: str, **extra: Any) -> str:
        """A visit without CNO symptoms."""
        return self.visit(on, **extra)

    def imaging(self, on: str, modality: str = "mri", *, lesions: list[dict[str, Any]],
                by: str = "dr.vega", at_time: time = time(12, 0)) -> str:
        return self.add(on, ImagingRecorded.model_validate(
            {"modality": modality, "lesions": lesions}), by=by, at_time=at_time)

    def biopsy(self, on: str, *, findings: list[str], culture_sterile: bool,
               malignancy: bool | None = None, site: str = "tibia") -> str:
        return self.add(on, BiopsyRecorded.model_validate(
            {"site": site, "findings": findings, "culture_sterile": culture_sterile,
             "malignancy": malignancy}))

    def comorbidity(self, on: str, condition: str, label: str | None = None) -> str:
        return self.add(on, ComorbidityRecorded.model_validate(
            {"condition": condition, "label": label}))

    def assess(self, on: str, diagnosed_on: str | None = None, **criteria: bool | None) -> str:
        return self.add(on, DiagnosisAssessed.model_validate(
            {"diagnosed_on": d(diagnosed_on or on), "criteria": criteria}))

    def start(self, on: str, course_id: str, drug: str, **extra: Any) -> str:
        return self.add(on, MedicationStarted.model_validate(
            {"course_id": course_id, "drug": drug, **extra}))

    def change(self, on: str, course_id: str, **extra: Any) -> str:
        return self.add(on, MedicationChanged.model_validate({"course_id": course_id, **extra}))

    def stop(self, on: str, course_id: str, reason: str | None = None) -> str:
        return self.add(on, MedicationStopped.model_validate(
            {"course_id": course_id, "reason": reason}))

    def infusion(self, on: str, dose_mg: float, weight_kg: float,
                 drug: str = "pamidronate", course_id: str | None = None) -> str:
        return self.add(on, InfusionAdministered.model_validate(
            {"drug": drug, "dose_mg": dose_mg, "weight_kg": weight_kg,
             "course_id": course_id}))
