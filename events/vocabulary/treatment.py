"""Medication courses, infusions, adverse events."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from events.vocabulary.common import Drug, EventData, Identifier, PositiveNumber, Text

Regimen = Literal["monthly", "quarterly"]
ShortText = Annotated[str, Field(min_length=1, max_length=64)]


class MedicationStarted(EventData):
    course_id: Identifier
    drug: Drug
    dose: PositiveNumber | None = None
    dose_unit: ShortText | None = None
    frequency: ShortText | None = None
    route: ShortText | None = None
    regimen: Regimen | None = None
    reason: Text | None = None

    @model_validator(mode="after")
    def _regimen_only_for_bisphosphonates(self) -> MedicationStarted:
        if self.regimen is not None and self.drug not in ("pamidronate", "zoledronic_acid"):
            raise ValueError("regimen applies only to pamidronate or zoledronic_acid courses")
        return self


class MedicationChanged(EventData):
    course_id: Identifier
    dose: PositiveNumber | None = None
    dose_unit: ShortText | None = None
    frequency: ShortText | None = None
    regimen: Regimen | None = None

    @model_validator(mode="after")
    def _something_changes(self) -> MedicationChanged:
        if all(v is None for v in (self.dose, self.dose_unit, self.frequency, self.regimen)):
            raise ValueError("name at least one of dose, dose_unit, frequency, regimen")
        return self


class MedicationStopped(EventData):
    course_id: Identifier
    reason: Literal["remission", "ineffective", "adverse_event", "completed", "other"] | None = None


class InfusionAdministered(EventData):
    drug: Literal["pamidronate", "zoledronic_acid", "infliximab"]
    dose_mg: Annotated[float, Field(gt=0, le=1000)]
    weight_kg: Annotated[float, Field(gt=0, le=250)]
    course_id: Identifier | None = None
    premedication_paracetamol: bool | None = None
    duration_hours: Annotated[float, Field(gt=0, le=48)] | None = None
    diluent_ml: Annotated[float, Field(gt=0, le=5000)] | None = None

    @property
    def mg_per_kg(self) -> float:
        return self.dose_mg / self.weight_kg


class AdverseEventRecorded(EventData):
    kind: Literal[
        "flu_like", "bone_pain", "hypocalcaemia", "hypophosphataemia", "vomiting", "diarrhoea",
        "conjunctivitis", "cytopenia", "infusion_reaction", "other",
    ]
    severity: Literal["mild", "moderate", "severe"]
    symptomatic: bool | None = None
    related_drug: Drug | None = None
