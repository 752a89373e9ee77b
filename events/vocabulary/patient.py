"""Enrolment, diagnosis and the slow-changing facts about a patient."""

from __future__ import annotations

from typing import Literal

from pydantic import model_validator

from events.vocabulary.common import ClinicalDate, EventData, Text


class PatientEnrolled(EventData):
    birth_date: ClinicalDate
    sex: Literal["female", "male", "other", "unknown"]
    symptom_onset: ClinicalDate | None = None
    first_consultation: ClinicalDate | None = None

    @model_validator(mode="after")
    def _order(self) -> PatientEnrolled:
        if self.symptom_onset is not None and self.symptom_onset < self.birth_date:
            raise ValueError("symptom_onset is before birth_date")
        if self.first_consultation is not None and self.first_consultation < self.birth_date:
            raise ValueError("first_consultation is before birth_date")
        return self


class JanssonCriteria(EventData):
    multifocal_lesions: bool | None = None
    osteolytic_or_sclerotic_lesion: bool | None = None
    sterile_biopsy_inflammation: bool | None = None
    palmoplantar_psoriasis_pustulosis: bool | None = None
    good_general_status: bool | None = None
    course_over_6_months: bool | None = None
    normal_labs_raised_esr: bool | None = None
    hyperostosis: bool | None = None
    autoimmune_association: bool | None = None


class DiagnosisAssessed(EventData):
    diagnosed_on: ClinicalDate
    criteria: JanssonCriteria = JanssonCriteria()
    initially_treated_as_infection: bool | None = None


class ComorbidityRecorded(EventData):
    condition: Literal[
        "ibd", "psoriasis", "palmoplantar_pustulosis", "acne_conglobata", "sapho",
        "severe_kidney_failure", "enterocolitis", "lymphoma", "other",
    ]
    label: Text | None = None


class ProcedureRecorded(EventData):
    procedure: Literal["bone_surgery", "other"]
    label: Text | None = None
