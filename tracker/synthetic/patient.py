"""A simulated patient of the synthetic cohort: demographics, growth curves, the clock of
clinic days, and the event rows it accumulates (tracker.synthetic.cohort drives it)."""

from __future__ import annotations

import math
import random
from datetime import date, datetime, time, timedelta
from functools import lru_cache
from itertools import accumulate
from typing import Any
from zoneinfo import ZoneInfo

Lesion = tuple[str, str]
_Row = tuple[int, int, int, str, str, dict[str, Any], str]

# Table 4 "Location of focus" (n = 37), the groups spread over the contract's sites.
_SITES: tuple[tuple[str, float], ...] = (
    ("tibia", 18.0), ("femur", 10.0), ("fibula", 8.0), ("talus", 7.0), ("calcaneus", 4.0),
    ("metatarsal", 4.4), ("clavicle", 13.5), ("sternum", 6.4), ("rib", 4.4), ("pelvis", 10.8),
    ("spine", 5.0), ("sacrum", 3.1), ("humerus", 2.0), ("radius", 1.4), ("ulna", 1.0),
    ("hand", 1.0),
)
SITE_NAMES = [s for s, _ in _SITES]
SITE_CUM = list(accumulate(w for _, w in _SITES))
MIDLINE = frozenset({"sternum", "spine", "sacrum"})

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
BASELINE_GROUPS = (_HAEMOGRAM, ("phosphate", "calcium"), ("urine_calcium_creatinine",),
                    ("vitamin_d_25oh",), ("alt", "ast"), ("creatinine",))
POST_DOSE_GROUPS = (_HAEMOGRAM, ("phosphate", "calcium"), ("urine_calcium_creatinine",),
                     ("vitamin_d_25oh",), ("creatinine",))

_DOCTORS = ("dr.ruiz", "dr.martin")
NURSES = ("nurse.lopez", "nurse.garcia")
# Default minute of the day of date-only events, for a sensible order within one day.
_MINUTE = {"PatientEnrolled": 0, "MedicationStarted": 470, "VisitRecorded": 600,
           "ImagingRecorded": 700, "BiopsyRecorded": 800, "ComorbidityRecorded": 850,
           "DiagnosisAssessed": 960, "MedicationChanged": 1000, "MedicationStopped": 1010,
           "AdverseEventRecorded": 1200, "ProcedureRecorded": 800}

@lru_cache(maxsize=8192)
def _offset(day: date, zone: ZoneInfo) -> str:
    """The centre's UTC offset at clinic hours on ``day`` (``+01:00``), from the time-zone
    database: summer time changes at night, before any clinic hour."""
    offset = datetime.combine(day, time(12), zone).utcoffset() or timedelta(0)
    minutes = round(offset.total_seconds() / 60)
    sign = "-" if minutes < 0 else "+"
    return f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


def next_weekday(day: date, latest: int = 4) -> date:
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


class SimulatedPatient:
    """One simulated course; ``rows`` collects the events, sorted at the end."""

    def __init__(self, rng: random.Random, ref: str, diagnosis: date, zone: ZoneInfo) -> None:
        self.rng, self.ref, self.zone = rng, ref, zone
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
            offset = _offset(day, self.zone)
            when = f"{day.isoformat()}T{minute // 60:02d}:{minute % 60:02d}:00{offset}"
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
                    self.add("ImagingRecorded", next_weekday(day + timedelta(days=late)),
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
