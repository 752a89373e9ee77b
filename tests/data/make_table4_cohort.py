"""Write tests/data/table4-cohort.jsonl: 12 hand-built patients whose aggregates are the
seed paper's Table 4 (see README.md beside this file for every choice).

Deterministic (no randomness): run ``python tests/data/make_table4_cohort.py`` from the
repository root and the file comes out byte for byte the same."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

OUT = Path(__file__).with_name("table4-cohort.jsonl")
Focus = tuple[str, str]


@dataclass(frozen=True)
class Spec:
    ref: str
    sex: str
    age: float  # years at diagnosis
    diagnosed: date
    delay_days: int  # symptom onset to diagnosis
    foci: tuple[Focus, ...]
    limitation: bool
    fever: bool
    labs: tuple[float, float, float]  # leukocytes 10*9/L, CRP mg/L, ESR mm/h
    mri: tuple[str, ...]  # lesion findings
    biopsy: tuple[str, ...] = ()  # findings; empty = not biopsied
    drugs: frozenset[str] = frozenset()  # beyond the NSAID everyone gets
    relapses: int = 0
    comorbidity: str | None = None
    weight: float = 36.0  # even, so 0.5 mg/kg is a whole number of mg
    pamidronate_months: int = 0  # monthly doses after the first cycle
    fever_at_diagnosis: bool = False  # fever first noted at the diagnosis visit
    fever_in_relapses: bool = False  # after diagnosis: must not count as a presenting sign


OEDEMA = "bone marrow oedema"
SPECS = (
    Spec("T4-01", "female", 10.91, date(2010, 3, 15), 15, (("clavicle", "right"),),
         False, False, (3.86, 17.0, 49), (OEDEMA,), ("fibrosis",), frozenset()),
    Spec("T4-02", "female", 8.18, date(2010, 9, 20), 27, (("tibia", "left"),),
         False, False, (11.17, 5.0, 31), (OEDEMA,), ("fibrosis", "inflammation"),
         frozenset({"antibiotic"}), relapses=1, weight=26.0, fever_in_relapses=True),
    Spec("T4-03", "female", 12.41, date(2011, 2, 7), 43,
         (("tibia", "right"), ("fibula", "right")), True, True, (12.03, 56.0, 75),
         (OEDEMA, "periosteal reaction"), ("fibrosis", "necrosis"),
         frozenset({"antibiotic", "prednisone"})),
    Spec("T4-04", "female", 11.53, date(2011, 6, 13), 58,
         (("clavicle", "left"), ("sternum", "midline")), False, False, (9.66, 8.0, 20),
         ("cortical thickening",), (), frozenset({"prednisone"}), relapses=1, weight=40.0,
         fever_in_relapses=True),
    Spec("T4-05", "female", 9.59, date(2011, 11, 21), 64,
         (("femur", "left"), ("tibia", "left"), ("talus", "left")), True, True,
         (14.17, 110.0, 97), (OEDEMA, "lytic lesion"), ("fibrosis", "inflammation", "necrosis"),
         frozenset({"antibiotic", "prednisone"}), relapses=2, weight=30.0),
    Spec("T4-06", "male", 13.55, date(2012, 4, 16), 161,
         (("pelvis", "right"), ("sacrum", "midline"), ("femur", "right")), True, True,
         (13.1, 30.0, 86), (OEDEMA, "soft tissue infiltration"), ("fibrosis",),
         frozenset({"antibiotic", "methotrexate"}), relapses=1, weight=50.0),
    Spec("T4-07", "female", 10.12, date(2012, 10, 8), 70,
         (("clavicle", "right"), ("rib", "right"), ("tibia", "left")), True, False,
         (7.3, 3.8, 1), (OEDEMA,), (), frozenset({"prednisone", "adalimumab"}),
         comorbidity="acne_conglobata", weight=34.0),
    Spec("T4-08", "female", 11.97, date(2013, 3, 11), 170,
         (("tibia", "left"), ("tibia", "right"), ("calcaneus", "left"),
          ("metatarsal", "right")), True, True, (16.97, 235.0, 113), (OEDEMA,),
         ("inflammation",), frozenset({"antibiotic", "prednisone", "pamidronate"}),
         relapses=5, weight=40.0, pamidronate_months=5),
    Spec("T4-09", "male", 10.56, date(2013, 9, 9), 274,
         (("pelvis", "left"), ("spine", "midline"), ("femur", "left"), ("humerus", "right")),
         True, True, (8.59, 19.2, 56), ("lytic lesion", "cortical disruption"),
         ("no_findings",), frozenset({"pamidronate"}), relapses=1, weight=36.0,
         pamidronate_months=3, fever_at_diagnosis=True),
    Spec("T4-10", "female", 12.94, date(2014, 2, 17), 75,
         (("clavicle", "left"), ("rib", "left"), ("pelvis", "right"), ("fibula", "left")),
         True, False, (10.52, 12.0, 38), (OEDEMA, "soft tissue infiltration"), (),
         frozenset({"antibiotic", "prednisone", "adalimumab"}), comorbidity="ibd",
         weight=46.0),
    Spec("T4-11", "female", 9.06, date(2014, 9, 15), 487,
         (("tibia", "right"), ("talus", "right"), ("calcaneus", "right"), ("femur", "right"),
          ("radius", "left")), True, True, (6.01, 50.0, 65),
         (OEDEMA, "periosteal reaction"), ("inflammation",),
         frozenset({"antibiotic", "pamidronate"}), relapses=2, weight=28.0,
         pamidronate_months=2),
    Spec("T4-12", "female", 11.18, date(2015, 5, 11), 91,
         (("clavicle", "right"), ("sternum", "midline"), ("pelvis", "left"),
          ("spine", "midline"), ("metatarsal", "left")), True, True, (15.46, 6.0, 10),
         ("cortical thickening",), (), frozenset({"prednisone", "pamidronate"}),
         relapses=1, weight=38.0, pamidronate_months=4),
)


class Writer:
    def __init__(self, spec: Spec) -> None:
        self.spec = spec
        self.rows: list[dict[str, Any]] = []

    def add(self, etype: str, day: date, data: dict[str, Any], by: str = "dr.ruiz") -> None:
        n = len(self.rows) + 1
        self.rows.append({"type": etype, "patient": self.spec.ref,
                          "occurred_at": day.isoformat(), "recorded_by": by,
                          "idempotency_key": f"t4-{self.spec.ref}-{n}", "data": data})

    def visit(self, day: date, *, pain: bool, limitation: bool = False,
              fever: bool | None = None, lesions: tuple[Focus, ...] = (),
              free_since: date | None = None) -> None:
        data: dict[str, Any] = {"pain": pain, "swelling": False,
                                "functional_limitation": limitation,
                                "physician_global_active": pain,
                                "weight_kg": self.spec.weight}
        if fever is not None:
            data["fever"] = fever
        if lesions:
            data["active_lesions"] = [{"site": s, "side": d} for s, d in lesions]
        if free_since is not None:
            data["symptom_free_since"] = free_since.isoformat()
        self.add("VisitRecorded", day, data)

    def lab(self, day: date, analyte: str, value: float, unit: str) -> None:
        self.add("LabResultRecorded", day, {"analyte": analyte, "value": value, "unit": unit},
                 "lab.feed")

    def monitoring_labs(self, day: date, baseline: bool) -> None:
        for analyte, value, unit in (("haemoglobin", 125.0, "g/L"),
                                     ("leukocytes", 7.2, "10*9/L"),
                                     ("calcium", 2.35, "mmol/L"),
                                     ("phosphate", 1.4, "mmol/L"),
                                     ("urine_calcium_creatinine", 0.5, "mmol/mmol"),
                                     ("vitamin_d_25oh", 62.0, "nmol/L"),
                                     ("creatinine", 44.0, "umol/L")):
            self.lab(day, analyte, value, unit)
        if baseline:
            self.lab(day, "alt", 18.0, "U/L")

    def course(self, day: date, cid: str, drug: str, **fields: Any) -> None:
        self.add("MedicationStarted", day, {"course_id": cid, "drug": drug, **fields})

    def stop(self, day: date, cid: str, reason: str) -> None:
        self.add("MedicationStopped", day, {"course_id": cid, "reason": reason})


def days(n: int) -> timedelta:
    return timedelta(days=n)


def build(spec: Spec) -> list[dict[str, Any]]:
    w = Writer(spec)
    diag = spec.diagnosed
    onset = diag - days(spec.delay_days)
    fc = onset + days(spec.delay_days // 2)
    span = (diag - fc).days
    w.add("PatientEnrolled", fc, {
        "birth_date": (diag - days(round(spec.age * 365.25))).isoformat(), "sex": spec.sex,
        "symptom_onset": onset.isoformat(), "first_consultation": fc.isoformat()}, "import")
    w.visit(fc, pain=True, limitation=spec.limitation,
            fever=spec.fever and not spec.fever_at_diagnosis, lesions=spec.foci[:1])
    leukocytes, crp, esr = spec.labs
    w.lab(fc, "leukocytes", leukocytes, "10*9/L")
    w.lab(fc, "crp", crp, "mg/L")
    w.lab(fc, "esr", esr, "mm/h")
    w.add("ImagingRecorded", fc, {"modality": "radiograph", "lesions": [
        {"site": spec.foci[0][0], "side": spec.foci[0][1], "findings": ["lytic lesion"]}]},
          "import")
    w.course(fc, "nsaid-1", "naproxen", dose=250.0, dose_unit="mg", frequency="twice daily",
             route="oral")
    if "antibiotic" in spec.drugs:
        w.course(fc, "abx-1", "antibiotic", route="intravenous",
                 reason="suspected bacterial osteomyelitis")
        w.stop(fc + days(21), "abx-1", "ineffective")
    if spec.comorbidity == "acne_conglobata":
        w.add("ComorbidityRecorded", fc, {"condition": "acne_conglobata"})
    lesions = [{"site": s, "side": d, "active": True} for s, d in spec.foci]
    w.add("ImagingRecorded", fc + days(span // 3), {"modality": "bone_scintigraphy",
                                                    "lesions": lesions}, "import")
    w.add("ImagingRecorded", fc + days(2 * span // 3), {"modality": "mri", "lesions": [
        {**x, "findings": list(spec.mri)} for x in lesions]}, "import")
    if spec.biopsy:
        w.add("BiopsyRecorded", fc + days(5 * span // 6), {
            "site": spec.foci[0][0], "findings": list(spec.biopsy), "culture_sterile": True,
            "malignancy": False})
    if spec.comorbidity == "ibd":
        w.add("ComorbidityRecorded", diag, {"condition": "ibd", "label": "Crohn disease"})
    w.visit(diag, pain=True, fever=spec.fever_at_diagnosis, lesions=spec.foci[:1])
    w.add("DiagnosisAssessed", diag, {"diagnosed_on": diag.isoformat(), "criteria": {
        "multifocal_lesions": len(spec.foci) > 1,
        "osteolytic_or_sclerotic_lesion": True,
        "sterile_biopsy_inflammation": (
            any(f in ("fibrosis", "inflammation", "sclerosis") for f in spec.biopsy)
            if spec.biopsy else None),
        "palmoplantar_psoriasis_pustulosis": False,
        "good_general_status": True,
        "normal_labs_raised_esr": esr > 20,
        "autoimmune_association": spec.comorbidity is not None},
        "initially_treated_as_infection": "antibiotic" in spec.drugs})

    t = diag
    if "prednisone" in spec.drugs:
        w.course(diag + days(7), "pred-1", "prednisone", dose=1.0, dose_unit="mg/kg/day",
                 frequency="daily", route="oral", reason="persistent symptoms")
        w.stop(diag + days(28), "pred-1", "completed")
    if "pamidronate" in spec.drugs:
        first = diag + days(35)
        w.monitoring_labs(first - days(7), baseline=True)
        w.course(first, "pam-1", "pamidronate", dose=1.0, dose_unit="mg/kg",
                 frequency="monthly", route="intravenous", regimen="monthly")
        half = spec.weight / 2
        for k, mg in enumerate((half, spec.weight, spec.weight)):
            if k == 2:  # after dose 2, collected before dose 3 in the file's order
                w.monitoring_labs(first + days(2), baseline=False)
            w.add("InfusionAdministered", first + days(k), {
                "drug": "pamidronate", "dose_mg": mg, "weight_kg": spec.weight,
                "course_id": "pam-1", "premedication_paracetamol": True,
                "duration_hours": 4.0, "diluent_ml": 250.0}, "nurse.lopez")
        w.monitoring_labs(first + days(6), baseline=False)
        last = first + days(2)
        for m in range(1, spec.pamidronate_months + 1):
            last = first + days(30 * m)
            w.add("InfusionAdministered", last, {
                "drug": "pamidronate", "dose_mg": spec.weight, "weight_kg": spec.weight,
                "course_id": "pam-1"}, "nurse.lopez")
        w.stop(last + days(20), "pam-1", "remission")
        t = max(t, last)
    if "methotrexate" in spec.drugs:
        w.course(diag + days(30), "mtx-1", "methotrexate", dose=10.0, dose_unit="mg",
                 frequency="weekly", route="subcutaneous", reason="relapsing disease")
        w.stop(diag + days(430), "mtx-1", "remission")
    if "adalimumab" in spec.drugs:
        w.course(diag + days(60), "ada-1", "adalimumab", dose=24.0, dose_unit="mg",
                 frequency="every 14 days", route="subcutaneous",
                 reason="associated inflammatory disease")

    # Onset episode ends; then relapses, each > 1 month after a documented absence.
    free = t + days(40)
    w.stop(free, "nsaid-1", "remission")
    w.visit(free + days(20), pain=False, free_since=free)
    for r in range(1, spec.relapses + 1):
        flare = free + days(110)
        w.visit(flare, pain=True, limitation=True, fever=spec.fever_in_relapses,
                lesions=spec.foci[-1:])
        w.course(flare, f"nsaid-{r + 1}", "ibuprofen", dose=300.0, dose_unit="mg",
                 frequency="three times daily", route="oral")
        free = flare + days(30)
        w.stop(free + days(10), f"nsaid-{r + 1}", "remission")
        w.visit(free + days(15), pain=False, free_since=free)
    for months in (8, 14):
        w.visit(free + days(30 * months), pain=False, free_since=free)
    return w.rows


def main() -> None:
    with OUT.open("w", encoding="utf-8") as fh:
        for spec in SPECS:
            for row in build(spec):
                fh.write(json.dumps(row, ensure_ascii=False, separators=(",", ":")) + "\n")


if __name__ == "__main__":
    main()
