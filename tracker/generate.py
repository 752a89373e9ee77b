"""Synthetic cohort: realistic CNO courses as import lines.

The lines follow interchange.md, "Input: events as JSON Lines", exactly. ``generate_cohort`` is
pure and deterministic: no clock, no environment. Patient ``i`` draws from its own
``random.Random`` seeded with ``(seed, i)``, so a smaller cohort is a prefix of a larger one with
the same seed and ``until``. Proportions follow the seed paper (Table 4 and text) and the
protocol (Tables 2 and 3); tests/unit/test_generate.py checks them within loose bounds.

Treatment follows the protocol on purpose (pamidronate doses are rounded down to whole mg, so no
dose exceeds 0.5/1 mg/kg, 60 mg or 11.5 mg/kg/year); the deliberate imperfections are in the
monitoring: ~10-15% of lab sets late, incomplete or missing, and renal ultrasounds now and then
late or never done.

What the import format cannot carry is not generated: ``EntryVoided``/``EntryCorrected`` need the
target's ``event_id``, which the importer assigns, and ``recorded_at`` is system time, so neither
corrections nor late entries appear in a cohort file.
"""

from __future__ import annotations

import io
import math
import os
import random
from collections.abc import Iterator
from datetime import date, timedelta
from itertools import accumulate
from typing import IO, Any

import orjson

from tracker.projections.common import add_months

Lesion = tuple[str, str]
_Row = tuple[int, int, int, str, str, dict[str, Any], str]

# Table 4 "Location of focus" (n = 37), the groups spread over the contract's sites.
_SITES: tuple[tuple[str, float], ...] = (
    ("tibia", 18.0), ("femur", 10.0), ("fibula", 8.0), ("talus", 7.0), ("calcaneus", 4.0),
    ("metatarsal", 4.4), ("clavicle", 13.5), ("sternum", 6.4), ("rib", 4.4), ("pelvis", 10.8),
    ("spine", 5.0), ("sacrum", 3.1), ("humerus", 2.0), ("radius", 1.4), ("ulna", 1.0),
    ("hand", 1.0),
)
_SITE_NAMES = [s for s, _ in _SITES]
_SITE_CUM = list(accumulate(w for _, w in _SITES))
_MIDLINE = frozenset({"sternum", "spine", "sacrum"})

# Median growth (age in years -> cm, kg), roughly WHO/CDC; individual factors scale them.
_AGES = (6, 8, 10, 11, 12, 13, 14, 15, 16, 17, 18)
_HEIGHT = {"female": (115, 128, 138, 144, 151, 157, 160, 162, 163, 163.5, 164),
           "male": (116, 128, 138, 143, 149, 156, 164, 170, 173, 175, 176)}
_WEIGHT = {"female": (20.5, 25.5, 32, 36, 41, 46, 49.5, 52, 53.5, 54.5, 55.5),
           "male": (21, 25.5, 32, 36, 40, 45.5, 51, 56, 60.5, 64, 66)}

# Accepted alternative units (interchange §5 table): canonical value -> entered value.
_ALT_UNITS: dict[str, tuple[str, float, int]] = {
    "calcium": ("mg/dL", 4.008, 1), "phosphate": ("mg/dL", 3.097, 1),
    "vitamin_d_25oh": ("ng/mL", 1 / 2.496, 1), "haemoglobin": ("g/dL", 0.1, 1),
    "creatinine": ("mg/dL", 1 / 88.42, 2), "crp": ("mg/dL", 0.1, 2),
    "leukocytes": ("10*3/uL", 1.0, 1), "urine_calcium_creatinine": ("mg/mg", 1 / 2.822, 2),
}
_CANONICAL: dict[str, tuple[str, int]] = {
    "crp": ("mg/L", 1), "esr": ("mm/h", 0), "leukocytes": ("10*9/L", 1),
    "haemoglobin": ("g/L", 0), "platelets": ("10*9/L", 0), "calcium": ("mmol/L", 2),
    "ionized_calcium": ("mmol/L", 2), "phosphate": ("mmol/L", 2),
    "urine_calcium_creatinine": ("mmol/mmol", 2), "vitamin_d_25oh": ("nmol/L", 0),
    "creatinine": ("umol/L", 0), "alt": ("U/L", 0), "ast": ("U/L", 0),
}
# LOINC codes only where the code is unambiguous for the unit entered.
_LOINC: dict[tuple[str, str], str] = {
    ("haemoglobin", "g/L"): "718-7", ("haemoglobin", "g/dL"): "718-7",
    ("leukocytes", "10*9/L"): "6690-2", ("leukocytes", "10*3/uL"): "6690-2",
    ("platelets", "10*9/L"): "777-3", ("alt", "U/L"): "1742-6", ("ast", "U/L"): "1920-8",
    ("crp", "mg/L"): "1988-5", ("crp", "mg/dL"): "1988-5", ("esr", "mm/h"): "4537-7",
    ("calcium", "mmol/L"): "2000-8", ("calcium", "mg/dL"): "17861-6",
    ("creatinine", "mg/dL"): "2160-0", ("creatinine", "umol/L"): "14682-9",
}
_HAEMOGRAM = ("haemoglobin", "leukocytes", "platelets")
_BASELINE_GROUPS = (_HAEMOGRAM, ("phosphate", "calcium"), ("urine_calcium_creatinine",),
                    ("vitamin_d_25oh",), ("alt", "ast"), ("creatinine",))
_POST_DOSE_GROUPS = (_HAEMOGRAM, ("phosphate", "calcium"), ("urine_calcium_creatinine",),
                     ("vitamin_d_25oh",), ("creatinine",))

_DOCTORS = ("dr.ruiz", "dr.martin")
_NURSES = ("nurse.lopez", "nurse.garcia")
# Default minute of the day of date-only events, for a sensible order within one day.
_MINUTE = {"PatientEnrolled": 0, "MedicationStarted": 470, "VisitRecorded": 600,
           "ImagingRecorded": 700, "BiopsyRecorded": 800, "ComorbidityRecorded": 850,
           "DiagnosisAssessed": 960, "MedicationChanged": 1000, "MedicationStopped": 1010,
           "AdverseEventRecorded": 1200, "ProcedureRecorded": 800}

_DST: dict[int, tuple[int, int]] = {}


def _offset(day: date) -> str:
    """Europe/Madrid UTC offset at daytime on ``day`` (CEST from the last Sunday of March to
    the last Sunday of October; the change happens at night, before any clinic hour)."""
    bounds = _DST.get(day.year)
    if bounds is None:
        mar, octo = date(day.year, 3, 31), date(day.year, 10, 31)
        start = mar - timedelta(days=(mar.weekday() + 1) % 7)
        end = octo - timedelta(days=(octo.weekday() + 1) % 7)
        bounds = _DST[day.year] = (start.toordinal(), end.toordinal())
    return "+02:00" if bounds[0] <= day.toordinal() < bounds[1] else "+01:00"


def _weekday(day: date, latest: int = 4) -> date:
    """The first day on or after ``day`` whose weekday is at most ``latest`` (0 = Monday)."""
    wd = day.weekday()
    return day if wd <= latest else day + timedelta(days=7 - wd)


def _interp(table: tuple[float, ...], age: float) -> float:
    if age <= _AGES[0]:
        return table[0] * (0.85 + 0.025 * age)  # gentle slope below 6 years
    for i in range(1, len(_AGES)):
        if age <= _AGES[i]:
            a0, a1 = _AGES[i - 1], _AGES[i]
            return table[i - 1] + (table[i] - table[i - 1]) * (age - a0) / (a1 - a0)
    return table[-1]


class _Patient:
    """One simulated course; ``rows`` collects the events, sorted at the end."""

    def __init__(self, rng: random.Random, ref: str, diagnosis: date) -> None:
        self.rng, self.ref = rng, ref
        self.rows: list[_Row] = []
        self.sex = "female" if rng.random() < 0.83 else "male"
        age = min(14.0, max(6.0, rng.gauss(11.0, 1.6)))
        self.birth = diagnosis - timedelta(days=round(age * 365.25))
        self.h_factor = min(1.1, max(0.9, rng.gauss(1.0, 0.04)))
        self.w_factor = min(1.45, max(0.75, rng.gauss(1.0, 0.12)))
        self.doctor = rng.choice(_DOCTORS)
        self.vit_d = min(140.0, max(15.0, rng.gauss(64.0, 20.0)))
        self.last_day = self.first_day = diagnosis
        self.courses: dict[str, int] = {}

    # -- building blocks -------------------------------------------------------------------
    def add(self, etype: str, day: date, data: dict[str, Any], by: str,
            minute: int | None = None) -> None:
        """Add an event; with ``minute`` it is a timed event (datetime with offset)."""
        if minute is None:
            when, m = day.isoformat(), _MINUTE[etype]
        else:
            when = f"{day.isoformat()}T{minute // 60:02d}:{minute % 60:02d}:00{_offset(day)}"
            m = minute
        self.rows.append((day.toordinal(), m, len(self.rows), etype, when, data, by))
        if day > self.last_day:
            self.last_day = day

    def height(self, day: date) -> float:
        return round(_interp(_HEIGHT[self.sex], (day - self.birth).days / 365.25)
                     * self.h_factor, 1)

    def weight(self, day: date) -> float:
        return round(_interp(_WEIGHT[self.sex], (day - self.birth).days / 365.25)
                     * self.w_factor, 1)

    def bsa(self, day: date) -> float:
        return math.sqrt(self.height(day) * self.weight(day) / 3600.0)

    def course_id(self, kind: str) -> str:
        n = self.courses[kind] = self.courses.get(kind, 0) + 1
        return f"{kind}-{n}"

    def start(self, day: date, drug: str, kind: str, **fields: Any) -> str:
        cid = self.course_id(kind)
        self.add("MedicationStarted", day,
                 {"course_id": cid, "drug": drug, **{k: v for k, v in fields.items()
                                                       if v is not None}}, self.doctor)
        return cid

    def stop(self, day: date, cid: str, reason: str) -> None:
        self.add("MedicationStopped", day, {"course_id": cid, "reason": reason}, self.doctor)

    def lab(self, day: date, minute: int, analyte: str, value: float) -> float:
        """One result; ``value`` is canonical; sometimes entered in an accepted alternative."""
        alt = _ALT_UNITS.get(analyte)
        if alt is not None and self.rng.random() < 0.15:
            unit, factor, digits = alt
            entered = round(value * factor, digits)
        else:
            unit, digits = _CANONICAL[analyte]
            entered = round(value, digits) if digits else float(round(value))
        data: dict[str, Any] = {"analyte": analyte, "value": entered, "unit": unit}
        code = _LOINC.get((analyte, unit))
        if code is not None:
            data["loinc"] = code
        self.add("LabResultRecorded", day, data, "lab.feed", minute)
        return value

    def labs(self, day: date, analytes: tuple[str, ...], post_dose: bool = False,
             minute: int | None = None, quiet: bool = False) -> None:
        rng = self.rng
        if minute is None:
            minute = rng.randint(465, 600)
        for analyte in analytes:
            value = self.value(analyte, post_dose, quiet)
            self.lab(day, minute, analyte, value)
            if analyte == "urine_calcium_creatinine" and value > 2.0:
                r = rng.random()  # Table 3: a kidney scan to rule out nephrocalcinosis
                if r < 0.9:
                    late = rng.randint(3, 25) if r < 0.8 else rng.randint(31, 60)
                    self.add("ImagingRecorded", _weekday(day + timedelta(days=late)),
                             {"modality": "renal_ultrasound", "lesions": [],
                              "nephrocalcinosis": rng.random() < 0.05}, "import")

    def value(self, analyte: str, post_dose: bool = False, quiet: bool = False) -> float:
        """A plausible canonical value for a child with CNO (seed Table 4 for the markers at
        presentation; ``quiet`` gives the near-normal markers of a symptom-free visit)."""
        g = self.rng.gauss
        if quiet and analyte == "crp":
            return min(30.0, max(0.2, self.rng.lognormvariate(math.log(2.0), 0.7)))
        if quiet and analyte == "esr":
            return min(60.0, max(2.0, g(10.0, 6.0)))
        if analyte == "crp":
            return min(235.0, max(0.5, self.rng.lognormvariate(math.log(18.1), 1.1)))
        if analyte == "esr":
            return min(140.0, max(2.0, g(53.4, 35.2)))
        if analyte == "leukocytes":
            return min(30.0, max(3.0, g(10.7, 3.9)))
        if analyte == "haemoglobin":
            return min(160.0, max(95.0, g(126.0, 10.0)))
        if analyte == "platelets":
            return min(700.0, max(120.0, g(320.0, 80.0)))
        if analyte == "calcium":
            return min(2.75, max(1.9, g(2.28 if post_dose else 2.4, 0.09)))
        if analyte == "ionized_calcium":
            return min(1.4, max(0.85, g(1.2, 0.07)))
        if analyte == "phosphate":
            return min(2.2, max(0.6, g(1.3 if post_dose else 1.45, 0.18)))
        if analyte == "urine_calcium_creatinine":
            if self.rng.random() < 0.04:
                return self.rng.uniform(2.05, 3.2)
            return min(1.9, max(0.05, self.rng.lognormvariate(math.log(0.45), 0.5)))
        if analyte == "vitamin_d_25oh":
            return min(200.0, max(10.0, g(self.vit_d, 8.0)))
        if analyte == "creatinine":
            return min(90.0, max(25.0, g(45.0, 8.0)))
        if analyte in ("alt", "ast"):
            return min(80.0, max(6.0, g(18.0 if analyte == "alt" else 28.0, 6.0)))
        raise KeyError(analyte)  # pragma: no cover

    def lab_set(self, day: date, groups: tuple[tuple[str, ...], ...], post_dose: bool,
                minute: int | None = None) -> None:
        """A monitoring set; ~6% lack one group (forgotten tube, haemolysed sample)."""
        chosen = list(groups)
        if self.rng.random() < 0.06:
            chosen.pop(self.rng.randrange(len(chosen)))
        analytes = tuple(a for grp in chosen for a in grp)
        if post_dose and self.rng.random() < 0.2:
            analytes += ("ionized_calcium",)
        self.labs(day, analytes, post_dose, minute)

    def visit(self, day: date, symptomatic: bool, lesions: list[Lesion], *, first: bool = False,
              free_since: date | None = None) -> None:
        rng = self.rng
        data: dict[str, Any]
        if symptomatic:
            pain = rng.random() < 0.95
            swelling = rng.random() < 0.45
            limitation = rng.random() < (0.75 if first else 0.5)
            if not (pain or swelling or limitation):
                pain = True
            data = {"pain": pain, "swelling": swelling, "functional_limitation": limitation,
                    "fever": rng.random() < (0.58 if first else 0.08),
                    "physician_global_active": True,
                    "pain_score": rng.randint(3, 8) if pain else rng.randint(0, 2)}
            if lesions and rng.random() < 0.8:
                data["active_lesions"] = [{"site": s, "side": d} for s, d in lesions]
        else:
            data = {"pain": False, "swelling": False, "functional_limitation": False,
                    "physician_global_active": False, "pain_score": 0}
            if rng.random() < 0.5:
                data["fever"] = False
            if free_since is not None and rng.random() < 0.92:
                data["symptom_free_since"] = free_since.isoformat()
        if rng.random() < 0.9:
            data["weight_kg"] = self.weight(day)
            data["height_cm"] = self.height(day)
        self.add("VisitRecorded", day, data, self.doctor)

    def imaging(self, day: date, modality: str, lesions: list[Lesion], active: bool | None,
                findings: list[str] | None = None) -> None:
        items = []
        for site, side in lesions:
            item: dict[str, Any] = {"site": site, "side": side}
            if active is not None:
                item["active"] = active
            item["findings"] = list(findings) if findings else []
            items.append(item)
        self.add("ImagingRecorded", day, {"modality": modality, "lesions": items}, "import")


def _days(n: int) -> timedelta:
    return timedelta(days=n)


def _before(day: date) -> date:
    """``day``, or the Friday before it when it falls on a weekend."""
    wd = day.weekday()
    return day if wd < 5 else day - _days(wd - 4)


def _foci(rng: random.Random) -> list[Lesion]:
    """Foci: mean 3.5 (SD 2.2), at least one; sites weighted like Table 4."""
    wanted = max(1, min(12, round(rng.gauss(3.5, 2.2))))
    foci: list[Lesion] = []
    for _ in range(60):
        if len(foci) >= wanted:
            break
        site = rng.choices(_SITE_NAMES, cum_weights=_SITE_CUM)[0]
        side = "midline" if site in _MIDLINE else rng.choice(("left", "right"))
        if (site, side) not in foci:
            foci.append((site, side))
    return foci


def _quiet(p: _Patient, since: date, before: date, foci: list[Lesion], last: bool) -> None:
    """Symptom-free visits every 1-3 months from a week or more after ``since`` (the first day
    without symptoms) until the day before ``before``; now and then a follow-up MRI."""
    rng = p.rng
    v = _weekday(since + _days(rng.randint(7, 28)))
    while v < before:
        p.visit(v, False, [], free_since=since)
        if rng.random() < 0.2:
            p.labs(v, ("crp", "esr"), quiet=True)
        v = _weekday(v + _days(rng.randint(30, 90)))
    span = (before - since).days
    if not last and span > 150 and rng.random() < 0.05:
        # Silent radiological activity (Beck 2010): active imaging without symptoms.
        p.imaging(_weekday(since + _days(span // 2)), "mri", [rng.choice(foci)], True,
                  ["bone marrow oedema"])
    elif last and span > 300 and rng.random() < 0.3:
        p.imaging(_weekday(since + _days(rng.randint(120, 300))), "mri", foci, False, [])


def _pamidronate(p: _Patient, first: date, earliest: date) -> None:
    """Table 3: baseline labs, a first cycle of 0.5/1/1 mg/kg on three days (at most 60 mg),
    labs after doses 2 and 3, then monthly or quarterly cycles of 1 mg/kg kept under the
    11.5 mg/kg/year cap (doses are rounded down to whole mg)."""
    rng = p.rng
    nurse = rng.choice(_NURSES)
    regimen = "monthly" if rng.random() < 0.5 else "quarterly"
    r = rng.random()
    if r < 0.05:  # 5% of courses with baseline labs too old, 4% without any
        p.lab_set(max(p.first_day, _before(first - _days(rng.randint(35, 60)))),
                  _BASELINE_GROUPS, False)
    elif r >= 0.09:
        p.lab_set(max(earliest, _before(first - _days(rng.randint(1, 21)))), _BASELINE_GROUPS,
                  False)
    cid = p.start(first, "pamidronate", "pam", dose=1.0, dose_unit="mg/kg",
                  frequency="monthly" if regimen == "monthly" else "every 3 months",
                  route="intravenous", regimen=regimen, reason="refractory to NSAID")
    if p.vit_d < 50 and rng.random() < 0.8:
        vid = p.start(first, "vitamin_d", "vitd", dose=rng.choice((800.0, 1000.0, 2000.0)),
                      dose_unit="IU", frequency="daily", route="oral", reason="low 25-OH vitamin D")
        p.stop(first + _days(rng.randint(90, 180)), vid, "completed")

    def infuse(day: date, mg_per_kg: float, premedication: bool) -> None:
        weight = p.weight(day)
        p.add("InfusionAdministered", day, {
            "drug": "pamidronate",
            "dose_mg": float(min(60, max(1, math.floor(weight * mg_per_kg)))),
            "weight_kg": weight, "course_id": cid, "premedication_paracetamol": premedication,
            "duration_hours": rng.choice((3.0, 3.5, 4.0)),
            "diluent_ml": 250.0 if weight < 35 else 500.0}, nurse, rng.randint(540, 615))

    for k, dose in enumerate((0.5, 1.0, 1.0)):
        infuse(first + _days(k), dose, True)
    if rng.random() < 0.3:  # flu-like syndrome after the first infusion
        p.add("AdverseEventRecorded", first, {
            "kind": "flu_like", "severity": "mild" if rng.random() < 0.75 else "moderate",
            "symptomatic": True, "related_drug": "pamidronate"}, nurse, rng.randint(1080, 1290))
    elif rng.random() < 0.05:
        p.add("AdverseEventRecorded", first + _days(1), {
            "kind": "bone_pain", "severity": "mild", "symptomatic": True,
            "related_drug": "pamidronate"}, p.doctor)
    dose2, dose3 = first + _days(1), first + _days(2)
    r = rng.random()  # after dose 2: the morning of dose 3; sometimes late or missed
    if r < 0.85:
        p.lab_set(dose3, _POST_DOSE_GROUPS, True, rng.randint(465, 525))
    elif r < 0.93:
        p.lab_set(_weekday(dose2 + _days(rng.randint(8, 13))), _POST_DOSE_GROUPS, True)
    r = rng.random()
    if r < 0.85:
        p.lab_set(_weekday(dose3 + _days(rng.randint(1, 6))), _POST_DOSE_GROUPS, True)
    elif r < 0.93:
        p.lab_set(_weekday(dose3 + _days(rng.randint(8, 20))), _POST_DOSE_GROUPS, True)
    last = dose3
    if regimen == "monthly":
        for k in range(1, rng.randint(3, 8) + 1):
            last = _weekday(add_months(first, k))
            if rng.random() < 0.5:
                p.labs(last, ("calcium", "phosphate", "creatinine"), True, rng.randint(465, 525))
            infuse(last, 1.0, rng.random() < 0.5)
    else:
        for k in range(1, rng.randint(1, 3) + 1):
            start = _weekday(add_months(first, 3 * k), 2)
            if rng.random() < 0.5:
                p.labs(start, ("calcium", "phosphate", "creatinine"), True, rng.randint(465, 525))
            for j in range(3):
                last = start + _days(j)
                infuse(last, 1.0, j == 0 and rng.random() < 0.5)
    if rng.random() < 0.02:  # not recommended after induction (Table 3): the odd case
        p.add("ProcedureRecorded", last + _days(rng.randint(20, 200)),
              {"procedure": "bone_surgery", "label": "physeal bar resection"}, p.doctor)
    p.stop(last + _days(rng.randint(14, 60)), cid,
           "remission" if rng.random() < 0.75 else "completed")



def _nsaid(p: _Patient, day: date, naproxen: bool) -> str:
    w = p.weight(day)
    if naproxen:
        return p.start(day, "naproxen", "nsaid", dose=min(500.0, max(125.0, round(w / 5) * 25.0)),
                       dose_unit="mg", frequency="every 12 hours", route="oral",
                       reason="bone pain")
    return p.start(day, "ibuprofen", "nsaid", dose=min(600.0, max(100.0, round(w / 5) * 50.0)),
                   dose_unit="mg", frequency="every 8 hours", route="oral", reason="bone pain")


def _workup(p: _Patient, fc: date, diagnosis: date, onset: date, foci: list[Lesion],
            presenting: list[Lesion], comorbidity: str | None, infection_first: bool) -> None:
    """First consultation to diagnosis: labs, radiograph, scintigraphy, MRI, biopsy, Jansson."""
    rng, span = p.rng, (diagnosis - fc).days
    minute = rng.randint(480, 600)
    for analyte in ("crp", "leukocytes", "haemoglobin", "platelets"):
        p.lab(fc, minute, analyte, p.value(analyte))
    esr = p.lab(fc, minute, "esr", p.value("esr"))
    lytic = rng.random() < 0.5
    p.imaging(fc, "radiograph", presenting[:1], None,
              ["lytic lesion"] if lytic and rng.random() < 0.6 else
              ["sclerosis"] if rng.random() < 0.2 else [])
    if infection_first:
        cid = p.start(fc, "antibiotic", "abx", route=rng.choice(("intravenous", "oral")),
                      reason="suspected bacterial osteomyelitis")
        stop = min(fc + _days(rng.randint(14, 42)), diagnosis + _days(rng.randint(0, 7)))
        p.stop(max(fc + _days(1), stop), cid, "ineffective")
    if comorbidity in ("acne_conglobata", "psoriasis", "palmoplantar_pustulosis"):
        p.add("ComorbidityRecorded", fc, {"condition": comorbidity}, p.doctor)
    p.imaging(fc + _days(int(span * 0.35)), "bone_scintigraphy", foci, True, ["increased uptake"])
    findings = ["bone marrow oedema"] if rng.random() < 0.75 else []
    if lytic:
        findings.append("lytic lesion")
    for finding in ("cortical thickening", "periosteal reaction", "soft tissue infiltration"):
        if rng.random() < 0.17:
            findings.append(finding)
    p.imaging(fc + _days(int(span * 0.55)), "mri", foci if rng.random() < 0.6 else presenting,
              True, findings or ["bone marrow oedema"])
    sterile: bool | None = None
    if rng.random() < 0.6:
        found = [f for f, share in (("inflammation", 0.8), ("fibrosis", 0.7), ("necrosis", 0.25),
                                    ("sclerosis", 0.1)) if rng.random() < share]
        if rng.random() < 0.1:
            found = ["no_findings"]
        found = found or ["inflammation"]
        culture_sterile = rng.random() < 0.97
        p.add("BiopsyRecorded", fc + _days(int(span * 0.75)), {
            "site": presenting[0][0], "findings": found, "culture_sterile": culture_sterile,
            "malignancy": False}, p.doctor)
        sterile = culture_sterile and any(
            f in ("inflammation", "fibrosis", "sclerosis") for f in found)
    if comorbidity == "ibd":
        p.add("ComorbidityRecorded", diagnosis + _days(rng.randint(0, 120)),
              {"condition": "ibd", "label": "Crohn disease"}, p.doctor)
    p.add("DiagnosisAssessed", diagnosis, {"diagnosed_on": diagnosis.isoformat(), "criteria": {
        "multifocal_lesions": len({s for s, _ in foci}) >= 2,
        "osteolytic_or_sclerotic_lesion": lytic if rng.random() < 0.9 else None,
        "sterile_biopsy_inflammation": sterile,
        "palmoplantar_psoriasis_pustulosis":
            True if comorbidity in ("psoriasis", "palmoplantar_pustulosis")
            else (False if rng.random() < 0.8 else None),
        "good_general_status": True if rng.random() < 0.9 else None,
        "course_over_6_months": diagnosis > add_months(onset, 6),
        "normal_labs_raised_esr": esr > 20,
        "hyperostosis": None if rng.random() < 0.6 else rng.random() < 0.05,
        "autoimmune_association": comorbidity in ("ibd", "acne_conglobata"),
    }, "initially_treated_as_infection": infection_first}, p.doctor)


def _simulate(rng: random.Random, ref: str, diagnosis: date) -> _Patient:
    """One patient's course: work-up, episodes (onset, then relapses) and the stepped
    treatment of Table 2, with quiet stretches in between."""
    p = _Patient(rng, ref, diagnosis)
    delay_days = max(5, round(min(16.0, max(0.2, rng.lognormvariate(math.log(2.4), 1.0)))
                              * 30.4375))
    late = delay_days > 152  # over 5 months: maintenance treatment in the seed's series
    onset = diagnosis - _days(delay_days)
    fc = p.first_day = onset + _days(int(delay_days * rng.uniform(0.1, 0.6)))
    foci = _foci(rng)
    presenting = foci if len(foci) == 1 or rng.random() < 0.6 else \
        foci[:rng.randint(1, len(foci) - 1)]  # the rest found by scintigraphy
    r = rng.random()
    comorbidity = ("ibd" if r < 0.06 else "acne_conglobata" if r < 0.12 else
                   "palmoplantar_pustulosis" if r < 0.15 else "psoriasis" if r < 0.17 else None)
    autoimmune = comorbidity in ("ibd", "acne_conglobata")
    naproxen = rng.random() < 0.65
    p.add("PatientEnrolled", fc, {"birth_date": p.birth.isoformat(), "sex": p.sex,
                                  "symptom_onset": onset.isoformat(),
                                  "first_consultation": fc.isoformat()}, "import")
    p.visit(fc, True, presenting, first=True)
    nsaid = _nsaid(p, fc, naproxen)
    _workup(p, fc, diagnosis, onset, foci, presenting, comorbidity, rng.random() < 0.58)

    relapses = 0 if rng.random() < (0.12 if late or autoimmune else 0.4) else \
        1 + min(4, int(rng.expovariate(1.2)))
    pred_ep = (0 if relapses == 0 or rng.random() < 0.7 else 1) if rng.random() < 0.5 else -1
    pam_ep = -1
    if rng.random() < (0.68 if late else 0.22):
        pam_ep = 0 if relapses == 0 or rng.random() < 0.35 else rng.randint(1, min(2, relapses))
        if pred_ep > pam_ep:
            pred_ep = pam_ep
    mtx_ep = rng.randint(0, relapses) if pam_ep < 0 and not autoimmune and rng.random() < 0.08 \
        else -1
    bio_ep, bio_reason = -1, "associated inflammatory disease"
    if autoimmune and rng.random() < 0.7:
        bio_ep = 0 if relapses == 0 or rng.random() < 0.5 else 1
    elif 0 <= pam_ep < relapses and rng.random() < 0.2:
        bio_ep, bio_reason = rng.randint(pam_ep + 1, relapses), "refractory to pamidronate"

    long_courses: list[tuple[str, str, date]] = []
    end = diagnosis
    for episode in range(relapses + 1):
        if episode == 0:
            lesions, treat_day = presenting, diagnosis
            end = diagnosis + _days(rng.randint(21, 70))
            visits = [diagnosis] if diagnosis > fc else []
        else:
            start = end + _days(rng.randint(45, 420))
            _quiet(p, end, start, foci, False)
            treat_day = _weekday(start + _days(rng.randint(0, 10)))
            end = treat_day + _days(rng.randint(21, 84))
            lesions = rng.sample(foci, rng.randint(1, min(3, len(foci))))
            nsaid = _nsaid(p, treat_day, naproxen)
            visits = [treat_day]
            if rng.random() < 0.6:
                p.labs(treat_day, ("crp", "esr"))
            if rng.random() < 0.5:
                p.imaging(_weekday(treat_day + _days(rng.randint(3, 21))), "mri", lesions, True,
                          ["bone marrow oedema"])
        pred_stop = None
        if episode == pred_ep:
            begin = (max(diagnosis + _days(1), fc + _days(rng.randint(28, 42))) if episode == 0
                     else treat_day + _days(rng.randint(0, 14)))
            dose = float(min(60, round(p.weight(begin) * rng.uniform(1.0, 2.0))))
            cid = p.start(begin, "prednisone", "pred", dose=dose, dose_unit="mg/day",
                          frequency="daily", route="oral", reason="persistent symptoms")
            length = rng.randint(14, 35)
            if length > 21:  # two weeks, then taper (Table 2)
                p.add("MedicationChanged", begin + _days(14),
                      {"course_id": cid, "dose": float(max(5, round(dose / 2)))}, p.doctor)
            pred_stop = begin + _days(length)
            p.stop(pred_stop, cid, "completed")
            end = max(end, begin + _days(rng.randint(7, 21)))
        if episode == pam_ep:
            first = (pred_stop + _days(rng.randint(3, 14)) if pred_stop is not None
                     else treat_day + _days(rng.randint(7, 35)))
            first = _weekday(first, 2)
            _pamidronate(p, first, treat_day)
            end = max(end, first + _days(rng.randint(14, 60)))
        if episode == mtx_ep:
            begin = treat_day + _days(rng.randint(7, 42))
            dose = min(25.0, round(p.bsa(begin) * rng.uniform(10.0, 15.0), 1))
            long_courses.append(("methotrexate", p.start(
                begin, "methotrexate", "mtx", dose=dose, dose_unit="mg", frequency="weekly",
                route=rng.choice(("oral", "subcutaneous")), reason="relapsing disease"), begin))
            end = max(end, begin + _days(rng.randint(14, 56)))
        if episode == bio_ep:
            begin = treat_day + _days(rng.randint(7, 42))
            long_courses.append(("adalimumab", p.start(
                begin, "adalimumab", "ada", dose=float(min(40, round(24 * p.bsa(begin)))),
                dose_unit="mg", frequency="every 14 days", route="subcutaneous",
                reason=bio_reason), begin))
            end = max(end, begin + _days(rng.randint(14, 56)))
        v = visits[-1] if visits else fc
        while True:
            v = _weekday(v + _days(rng.randint(14, 42)))
            if v >= end:
                break
            visits.append(v)
        for i, day in enumerate(visits):
            p.visit(day, True, lesions, first=episode > 0 and i == 0)
            if i and rng.random() < 0.35:
                p.labs(day, ("crp", "esr", "leukocytes"))
        p.stop(end + _days(rng.randint(0, 28)), nsaid, "remission")

    for drug, cid, begin in long_courses:
        stop = end + _days(rng.randint(365, 540)) if rng.random() < 0.75 else None
        day = begin + _days(rng.randint(80, 100))
        while drug == "methotrexate" and day < (stop or end + _days(720)):
            p.labs(_weekday(day), ("leukocytes", "platelets", "alt", "ast"))
            day += _days(rng.randint(80, 100))
        if stop is not None:
            p.stop(stop, cid, "remission")
    if rng.random() < 0.02:
        p.add("ComorbidityRecorded", diagnosis + _days(rng.randint(540, 900)),
              {"condition": "lymphoma", "label": "non-Hodgkin lymphoma"}, p.doctor)
    _quiet(p, end, max(end + _days(rng.randint(180, 900)), p.last_day + _days(30)), foci, True)
    return p


def generate_cohort(patients: int, seed: int, until: date,
                    start_year: int = 2010) -> Iterator[dict[str, Any]]:
    """Import lines for ``patients`` synthetic patients, patient by patient, each patient's
    events in clinical order, nothing after ``until``.

    Diagnoses fall between 1 January of ``start_year`` and two years before ``until`` (or 30
    days before it when that window is empty), so most courses have follow-up."""
    if patients < 0:
        raise ValueError("patients must be zero or more")
    low = date(start_year, 1, 1).toordinal()
    high = (until - _days(730)).toordinal()
    if high < low:
        high = (until - _days(30)).toordinal()
    if high < low:
        raise ValueError(f"until must be at least 30 days after {start_year}-01-01")
    last = until.toordinal()
    for index in range(1, patients + 1):
        rng = random.Random(f"cno-cohort:{seed}:{index}")
        ref = f"G{seed}-{index:04d}"
        course = _simulate(rng, ref, date.fromordinal(rng.randint(low, high)))
        course.rows.sort()
        for n, (day, _m, _s, etype, when, data, by) in enumerate(course.rows, 1):
            if day > last:
                break
            yield {"type": etype, "patient": ref, "occurred_at": when, "recorded_by": by,
                   "idempotency_key": f"gen-{seed}-{ref}-{n}", "data": data}


def write_cohort(target: str | os.PathLike[str] | IO[bytes] | IO[str], patients: int,
                 seed: int, until: date, start_year: int = 2010) -> int:
    """Write the cohort as compact JSON lines to a path or an open stream (text or binary);
    returns the number of lines written."""
    if isinstance(target, str | os.PathLike):
        with open(target, "wb") as fh:
            return write_cohort(fh, patients, seed, until, start_year)
    text = isinstance(target, io.TextIOBase)
    count, chunk = 0, []
    dumps, newline = orjson.dumps, orjson.OPT_APPEND_NEWLINE
    for line in generate_cohort(patients, seed, until, start_year):
        chunk.append(dumps(line, option=newline))
        count += 1
        if len(chunk) >= 4096:
            blob = b"".join(chunk)
            target.write(blob.decode() if text else blob)  # type: ignore[arg-type]
            chunk = []
    if chunk:
        blob = b"".join(chunk)
        target.write(blob.decode() if text else blob)  # type: ignore[arg-type]
    return count
