"""Visits, imaging and biopsy: what the team observed."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from events.vocabulary.common import (
    ClinicalDate,
    EventData,
    ImagingLesion,
    Lesion,
    Site,
)


class VisitRecorded(EventData):
    """A clinic visit: always a full observation of symptoms."""

    schema_version = 2  # v1 stored active_lesions as "site:side" strings

    pain: bool
    swelling: bool
    functional_limitation: bool
    fever: bool | None = None
    physician_global_active: bool | None = None
    pain_score: Annotated[int, Field(ge=0, le=10)] | None = None
    symptom_free_since: ClinicalDate | None = None
    active_lesions: list[Lesion] = Field(default_factory=list, max_length=50)
    weight_kg: Annotated[float, Field(gt=0, le=250)] | None = None
    height_cm: Annotated[float, Field(ge=30, le=230)] | None = None

    @property
    def symptomatic(self) -> bool:
        return self.pain or self.swelling or self.functional_limitation


class ImagingRecorded(EventData):
    modality: Literal[
        "radiograph", "bone_scintigraphy", "mri", "whole_body_mri", "ct", "renal_ultrasound",
    ]
    lesions: list[ImagingLesion] = Field(default_factory=list, max_length=50)
    nephrocalcinosis: bool | None = None


BiopsyFinding = Literal["fibrosis", "inflammation", "necrosis", "sclerosis", "no_findings"]


class BiopsyRecorded(EventData):
    site: Site
    findings: Annotated[list[BiopsyFinding], Field(min_length=1, max_length=5)]
    culture_sterile: bool
    malignancy: bool | None = None
