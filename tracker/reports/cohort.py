"""The cohort table: the seed paper's Table 4 rebuilt from the record.

``patient_record(evaluation)`` reduces one patient's evaluation to the inputs of Table 4;
``cohort_report(records, …)`` applies the seed's inclusion criteria (Methods: under 14 at
diagnosis, Jansson confirmed, diagnosed between two dates) and aggregates; ``render``
prints it as Markdown, a standalone HTML page, CSV or JSON. Pure: no store, no clock.

Readings (**[reading]**), also printed under the table:

- *Clinical symptoms* are those documented up to diagnosis: any visit dated on or before
  ``diagnosed_on`` with pain / functional limitation ("functional impotence") / fever;
  when no visit is that early, the first visit on record stands for the presentation.
- *Location of foci* counts foci, not patients (the seed's n = 37): a focus is a distinct
  (site, side) across imaging (every modality but renal ultrasound, active or not) and
  visits' active lesions on record up to the evaluation date, as the diagnosis projection
  counts sites for "multifocal". Groups: lower limbs = femur, tibia, fibula, talus,
  calcaneus, metatarsal; clavicle; ribs and/or sternum; hip = pelvis; spine and/or sacrum;
  upper limbs = humerus, radius, ulna, hand; mandible and other apart.
- *Course until first consultation* = ``first_consultation - symptom_onset``; *duration of
  symptoms until diagnosis* = ``diagnosed_on - symptom_onset``; both in months of
  30.4375 days (the diagnosis projection's month).
- *Leukocytes, CRP, ESR at diagnosis*: the first result collected on or before the
  diagnosis date (the seed's work-up starts with acute-phase reactants); without one, the
  first result within 30 days after it; else missing. Canonical units (leukocytes in
  10⁹/L: the seed's 10,736/µL is 10.7 × 10⁹/L).
- *MRI findings*: lesion ``findings`` of MRI / whole-body MRI dated on or before diagnosis
  (without one, the first within 30 days after), matched case-insensitively by words:
  oedema/edema; cortical thickening; lysis, lytic, osteolysis or cortical disruption /
  destruction; periosteal/periostitis; infiltration. Percentages over patients with such
  an MRI.
- *Biopsy findings*: every biopsy on record, over the patients biopsied.
- *Treatments received*: any course started (``MedicationStarted``) or infusion given up
  to the evaluation date; anti-TNF = adalimumab, infliximab, etanercept.
- *Outcomes* at the evaluation date: at least one relapse (seed definition); remission
  without treatment (state ``remission`` and no CNO course open); cumulative pamidronate
  mg/kg over the patients who received it.
- Exclusions count each patient once, for the first reason in this order: not enrolled,
  no diagnosis recorded, Jansson criteria not met, aged 14 or over at diagnosis, diagnosed
  before ``--from``, diagnosed after ``--to``. Age is in completed years (birthday rule).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from events.vocabulary import (
    BiopsyRecorded,
    ImagingRecorded,
    InfusionAdministered,
    LabResultRecorded,
    PatientEnrolled,
    VisitRecorded,
)
from tracker.facts import Fact
from tracker.projections.common import add_months
from tracker.projections.diagnosis import DAYS_PER_MONTH, Site, distinct_sites
from tracker.reports.stats import Summary, count_text, describe, percent
from tracker.status import Evaluation

GRACE_DAYS = 30
SYMPTOMS = (("pain", "Pain"), ("functional_limitation", "Functional impotence"),
            ("fever", "Fever"))
FOCUS_GROUPS: tuple[tuple[str, frozenset[str]], ...] = (
    ("Lower limbs", frozenset({"femur", "tibia", "fibula", "talus", "calcaneus",
                               "metatarsal"})),
    ("Clavicle", frozenset({"clavicle"})),
    ("Ribs and/or sternum", frozenset({"rib", "sternum"})),
    ("Hip", frozenset({"pelvis"})),
    ("Spine and/or sacrum", frozenset({"spine", "sacrum"})),
    ("Upper limbs", frozenset({"humerus", "radius", "ulna", "hand"})),
    ("Mandible", frozenset({"mandible"})),
    ("Other", frozenset({"other"})),
)
LABS = (("leukocytes", "Leukocytes (10⁹/L)"), ("crp", "CRP (mg/L)"), ("esr", "ESR (mm/h)"))
MRI_MODALITIES = frozenset({"mri", "whole_body_mri"})
MRI_FINDINGS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("oedema", "Oedema", ("oedema", "edema")),
    ("cortical_thickening", "Cortical thickening", ("cortical thickening",)),
    ("lysis", "Lysis and/or cortical disruption",
     ("lysis", "lytic", "cortical disruption", "cortical destruction")),
    ("periosteal_reaction", "Periosteal reaction", ("periost",)),
    ("infiltration", "Infiltration", ("infiltrat",)),
)
BIOPSY_FINDINGS = (("fibrosis", "Fibrosis"), ("inflammation", "Inflammation"),
                   ("necrosis", "Necrosis"), ("sclerosis", "Sclerosis"),
                   ("no_findings", "No findings"))
TREATMENTS: tuple[tuple[str, str, frozenset[str]], ...] = (
    ("antibiotic", "Antibiotic", frozenset({"antibiotic"})),
    ("nsaid", "NSAIDs", frozenset({"ibuprofen", "naproxen"})),
    ("corticoid", "Corticoids", frozenset({"prednisone"})),
    ("methotrexate", "Methotrexate", frozenset({"methotrexate"})),
    ("pamidronate", "Pamidronate", frozenset({"pamidronate"})),
    ("anti_tnf", "Anti-TNFα", frozenset({"adalimumab", "infliximab", "etanercept"})),
)

def exclusion_reasons(max_age: int) -> tuple[str, ...]:
    """The exclusion reasons in the order they are tested."""
    return ("not enrolled", "no diagnosis recorded", "Jansson criteria not met",
            f"aged {max_age} or over at diagnosis", "diagnosed before --from",
            "diagnosed after --to")


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 4)


# ------------------------------------------------------------------ one patient

@dataclass(frozen=True)
class PatientRecord:
    """What Table 4 needs of one patient (all derived from the evaluation)."""

    patient: str
    enrolled: bool
    sex: str | None
    birth_date: date | None
    diagnosed_on: date | None
    confirmed: bool
    symptoms: frozenset[str]
    foci: tuple[tuple[str, str | None], ...]
    symptom_onset: date | None
    first_consultation: date | None
    labs: dict[str, float]
    had_mri: bool
    mri_findings: frozenset[str]
    biopsied: bool
    biopsy_findings: frozenset[str]
    treatments: frozenset[str]
    relapses: int
    remission_without_treatment: bool
    pamidronate_mg_per_kg: float | None

    @property
    def months_to_first_consultation(self) -> float | None:
        return _months(self.symptom_onset, self.first_consultation)

    @property
    def months_to_diagnosis(self) -> float | None:
        return _months(self.symptom_onset, self.diagnosed_on)

    def diagnosed_over(self, months: int) -> bool | None:
        """Diagnosed strictly after onset + ``months`` calendar months (§0)."""
        if self.symptom_onset is None or self.diagnosed_on is None:
            return None
        return self.diagnosed_on > add_months(self.symptom_onset, months)

    @property
    def age_years(self) -> float | None:
        if self.birth_date is None or self.diagnosed_on is None:
            return None
        return (self.diagnosed_on - self.birth_date).days / 365.25

    def under(self, years: int) -> bool:
        """Younger than ``years`` completed years on the diagnosis date."""
        assert self.birth_date is not None and self.diagnosed_on is not None
        return add_months(self.birth_date, 12 * years) > self.diagnosed_on


def _months(start: date | None, end: date | None) -> float | None:
    if start is None or end is None:
        return None
    return (end - start).days / DAYS_PER_MONTH


def _diagnostic(facts: Sequence[Fact], diagnosed_on: date | None) -> list[Fact]:
    """Facts dated on or before diagnosis; if none, the first within the grace days."""
    if diagnosed_on is None:
        return list(facts[:1])
    before = [f for f in facts if f.on <= diagnosed_on]
    if before:
        return before
    late = [f for f in facts if f.on <= diagnosed_on + timedelta(days=GRACE_DAYS)]
    return late[:1]


def patient_record(ev: Evaluation) -> PatientRecord:
    """Reduce one evaluation to Table 4's inputs (see the module's readings)."""
    facts = ev.facts
    enrolment = next((f.data for f in reversed(facts) if isinstance(f.data, PatientEnrolled)),
                     None)
    diagnosed_on = ev.diagnosis.diagnosed_on
    visits = [f for f in facts if isinstance(f.data, VisitRecorded)]
    presenting = [f.data for f in _diagnostic(visits, diagnosed_on)]
    symptoms = frozenset(name for name, _ in SYMPTOMS
                         if any(getattr(v, name) is True for v in presenting))

    sites: list[Site] = []
    for f in facts:
        if isinstance(f.data, ImagingRecorded) and f.data.modality != "renal_ultrasound":
            sites.extend(Site(x.site, x.side, f.event_id) for x in f.data.lesions)
        elif isinstance(f.data, VisitRecorded):
            sites.extend(Site(x.site, x.side, f.event_id) for x in f.data.active_lesions)

    labs: dict[str, float] = {}
    for analyte, _ in LABS:
        results = [f for f in facts
                   if isinstance(f.data, LabResultRecorded) and f.data.analyte == analyte]
        chosen = _diagnostic(results, diagnosed_on)
        if chosen and diagnosed_on is not None:
            data = chosen[0].data
            labs[analyte] = float(data.canonical_value if data.canonical_value is not None
                                  else data.value)

    mris = _diagnostic([f for f in facts if isinstance(f.data, ImagingRecorded)
                        and f.data.modality in MRI_MODALITIES], diagnosed_on)
    texts = [t.lower() for m in mris for x in m.data.lesions for t in x.findings]
    mri_findings = frozenset(key for key, _, words in MRI_FINDINGS
                             if any(w in t for t in texts for w in words))
    biopsies = [f.data for f in facts if isinstance(f.data, BiopsyRecorded)]

    drugs = {c.drug for c in (*ev.treatment.open_courses, *ev.treatment.closed_courses)}
    drugs |= {f.data.drug for f in facts if isinstance(f.data, InfusionAdministered)}
    treatments = frozenset(key for key, _, names in TREATMENTS if drugs & names)
    doses = ev.pamidronate.doses
    return PatientRecord(
        patient=ev.patient, enrolled=enrolment is not None,
        sex=enrolment.sex if enrolment else None,
        birth_date=enrolment.birth_date if enrolment else None,
        diagnosed_on=diagnosed_on, confirmed=ev.diagnosis.confirmed, symptoms=symptoms,
        foci=tuple(distinct_sites(tuple(sites))),
        symptom_onset=enrolment.symptom_onset if enrolment else None,
        first_consultation=enrolment.first_consultation if enrolment else None,
        labs=labs, had_mri=bool(mris), mri_findings=mri_findings,
        biopsied=bool(biopsies),
        biopsy_findings=frozenset(x for b in biopsies for x in b.findings),
        treatments=treatments, relapses=ev.course.relapse_count,
        remission_without_treatment=(ev.course.state == "remission"
                                     and not ev.treatment.on_treatment),
        pamidronate_mg_per_kg=ev.pamidronate.lifetime_mg_per_kg if doses else None)


# ------------------------------------------------------------------ the table

@dataclass(frozen=True)
class Row:
    """A count over a denominator, or a quantitative summary."""

    label: str
    count: int | None = None
    total: int | None = None
    summary: Summary | None = None
    digits: int = 1

    @property
    def statistic(self) -> str:
        return "n (%)" if self.summary is None else self.summary.label

    @property
    def value(self) -> str:
        if self.summary is not None:
            return self.summary.text(self.digits)
        return count_text(self.count or 0, self.total or 0)

    @property
    def choice(self) -> str:
        if self.summary is None:
            return ""
        return f"n = {self.summary.n}; {self.summary.note}"

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"variable": self.label, "statistic": self.statistic,
                               "value": self.value}
        if self.summary is None:
            out.update(count=self.count, denominator=self.total,
                       percent=_round(percent(self.count or 0, self.total or 0)))
        else:
            out["summary"] = {k: _round(v) if isinstance(v, float) else v
                              for k, v in self.summary.as_json().items()}
        return out


@dataclass(frozen=True)
class Section:
    title: str
    n: int
    unit: str  # "patients", "foci", "patients with an MRI", "patients biopsied"
    rows: list[Row]

    @property
    def heading(self) -> str:
        return f"{self.title} (n = {self.n} {self.unit})"


@dataclass(frozen=True)
class CohortReport:
    at: date
    date_from: date | None
    date_to: date | None
    max_age: int
    total: int
    included: list[str]
    excluded: list[tuple[str, str]]  # (patient, reason)
    sections: list[Section]
    notes: list[str] = field(default_factory=list)

    @property
    def criteria(self) -> str:
        if self.date_from is None and self.date_to is None:
            span = "diagnosed at any date"
        else:
            span = (f"diagnosed from {self.date_from.isoformat() if self.date_from else '-'}"
                    f" to {self.date_to.isoformat() if self.date_to else '-'}")
        return (f"Jansson criteria confirmed; under {self.max_age} years at diagnosis; "
                f"{span}; evaluated at {self.at.isoformat()}")

    def exclusion_counts(self) -> list[tuple[str, int]]:
        return [(r, n) for r in exclusion_reasons(self.max_age)
                if (n := sum(1 for _, why in self.excluded if why == r))]


def _exclusion(r: PatientRecord, date_from: date | None, date_to: date | None,
               max_age: int) -> str | None:
    reasons = exclusion_reasons(max_age)
    if not r.enrolled or r.birth_date is None:
        return reasons[0]
    if r.diagnosed_on is None:
        return reasons[1]
    if not r.confirmed:
        return reasons[2]
    if not r.under(max_age):
        return reasons[3]
    if date_from is not None and r.diagnosed_on < date_from:
        return reasons[4]
    if date_to is not None and r.diagnosed_on > date_to:
        return reasons[5]
    return None


def _counts(label_keys: Iterable[tuple[str, str]], sets: list[frozenset[str]]) -> list[Row]:
    return [Row(label, sum(1 for s in sets if key in s), len(sets)) for key, label in label_keys]


def cohort_report(records: Sequence[PatientRecord], *, at: date, date_from: date | None = None,
                  date_to: date | None = None, max_age: int = 14) -> CohortReport:
    """Filter by the seed's inclusion criteria and aggregate Table 4."""
    excluded: list[tuple[str, str]] = []
    inc: list[PatientRecord] = []
    for r in sorted(records, key=lambda r: r.patient):
        why = _exclusion(r, date_from, date_to, max_age)
        if why is None:
            inc.append(r)
        else:
            excluded.append((r.patient, why))
    n = len(inc)
    foci = [site for r in inc for site, _ in r.foci]
    mri = [r for r in inc if r.had_mri]
    biopsied = [r for r in inc if r.biopsied]
    pam = [r.pamidronate_mg_per_kg for r in inc if r.pamidronate_mg_per_kg is not None]

    def quant(label: str, values: Iterable[float | None], digits: int = 1) -> Row:
        return Row(label, summary=describe(v for v in values if v is not None), digits=digits)

    sections = [
        Section("Patient characteristics", n, "patients", [
            Row("Sex (female)", sum(1 for r in inc if r.sex == "female"), n),
            quant("Age at diagnosis (years)", (r.age_years for r in inc))]),
        Section("Clinical symptoms up to diagnosis", n, "patients",
                _counts(SYMPTOMS, [r.symptoms for r in inc])),
        Section("Location of foci", len(foci), "foci", [
            Row(label, sum(1 for s in foci if s in sites), len(foci))
            for label, sites in FOCUS_GROUPS]),
        Section("Disease characteristics", n, "patients", [
            quant("Foci per patient", (len(r.foci) for r in inc)),
            Row("Single focus", sum(1 for r in inc if len(r.foci) == 1), n),
            quant("Course of disease until first consultation (months)",
                  (r.months_to_first_consultation for r in inc)),
            quant("Duration of symptoms until diagnosis (months)",
                  (r.months_to_diagnosis for r in inc)),
            Row("Duration until diagnosis over 5 months",
                sum(1 for r in inc if r.diagnosed_over(5)), n)]),
        Section("Analyses at diagnosis", n, "patients",
                [quant(label, (r.labs.get(a) for r in inc)) for a, label in LABS]),
        Section("MRI", len(mri), "patients with an MRI",
                _counts(((k, label) for k, label, _ in MRI_FINDINGS),
                        [r.mri_findings for r in mri])),
        Section("Biopsy", len(biopsied), "patients biopsied",
                _counts(BIOPSY_FINDINGS, [r.biopsy_findings for r in biopsied])),
        Section("Treatments received", n, "patients",
                _counts(((k, label) for k, label, _ in TREATMENTS),
                        [r.treatments for r in inc])),
        Section(f"Outcomes at {at.isoformat()}", n, "patients", [
            Row("Relapse (at least one)", sum(1 for r in inc if r.relapses > 0), n),
            quant("Relapses per patient", (r.relapses for r in inc)),
            Row("Remission without treatment",
                sum(1 for r in inc if r.remission_without_treatment), n),
            quant("Cumulative pamidronate among those treated (mg/kg)", pam, 2)]),
    ]
    return CohortReport(at, date_from, date_to, max_age, len(records),
                        [r.patient for r in inc], excluded, sections, list(NOTES))


NOTES = (
    "Counts are n (%) over the section's n. Quantitative variables: mean (SD) when "
    "Shapiro–Wilk does not reject normality (p ≥ 0.05), else median (IQR); n < 3 is not "
    "tested. SD with n - 1; quartiles by SPSS's weighted average (type 6).",
    "Symptoms: any visit up to the diagnosis date (else the first visit).",
    "Foci: distinct site and side across imaging and visits, counted per focus.",
    "Labs at diagnosis: the first result on or before the diagnosis date, else the first "
    "within 30 days after. MRI: studies on or before diagnosis, else the first within 30 "
    "days after.",
    "Treatments: any course started or infusion given. Outcomes at the evaluation date.",
)
