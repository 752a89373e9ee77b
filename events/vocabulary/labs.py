"""Lab results with UCUM units: kept as entered, plus the canonical value and unit."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import Field, ValidationInfo, field_validator

from events.vocabulary.common import LOINC_RE, EventData, Number, matching, trusted

Analyte = Literal[
    "crp", "esr", "leukocytes", "haemoglobin", "platelets", "calcium", "ionized_calcium",
    "phosphate", "magnesium", "urine_calcium_creatinine", "vitamin_d_25oh", "creatinine",
    "alt", "ast", "alkaline_phosphatase", "pth",
]


@dataclass(frozen=True)
class UnitRule:
    canonical: str
    #: accepted alternative unit -> factor that multiplies a value into the canonical unit
    alternatives: dict[str, float]
    #: physiological plausibility bounds, in the canonical unit (inclusive)
    low: float
    high: float


def _div(x: float) -> float:
    return 1.0 / x


UNITS: dict[str, UnitRule] = {
    "crp": UnitRule("mg/L", {"mg/dL": 10.0}, 0.0, 1000.0),
    "esr": UnitRule("mm/h", {}, 0.0, 200.0),
    "leukocytes": UnitRule("10*9/L", {"10*3/uL": 1.0}, 0.05, 500.0),
    "platelets": UnitRule("10*9/L", {"10*3/uL": 1.0}, 1.0, 3000.0),
    "haemoglobin": UnitRule("g/L", {"g/dL": 10.0}, 20.0, 260.0),
    "calcium": UnitRule("mmol/L", {"mg/dL": _div(4.008)}, 0.5, 5.0),
    "ionized_calcium": UnitRule("mmol/L", {"mg/dL": _div(4.008)}, 0.3, 3.0),
    "phosphate": UnitRule("mmol/L", {"mg/dL": _div(3.097)}, 0.1, 6.0),
    "magnesium": UnitRule("mmol/L", {"mg/dL": _div(2.431)}, 0.1, 5.0),
    "urine_calcium_creatinine": UnitRule("mmol/mmol", {"mg/mg": 2.822}, 0.0, 30.0),
    "vitamin_d_25oh": UnitRule("nmol/L", {"ng/mL": 2.496}, 0.0, 1000.0),
    "creatinine": UnitRule("umol/L", {"mg/dL": 88.42}, 5.0, 3000.0),
    "alt": UnitRule("U/L", {}, 0.0, 20000.0),
    "ast": UnitRule("U/L", {}, 0.0, 20000.0),
    "alkaline_phosphatase": UnitRule("U/L", {}, 0.0, 10000.0),
    "pth": UnitRule("pg/mL", {"pmol/L": 9.43}, 0.0, 5000.0),
}


def to_canonical(analyte: str, value: float, unit: str) -> float:
    rule = UNITS[analyte]
    if unit == rule.canonical:
        return value
    try:
        return value * rule.alternatives[unit]
    except KeyError:
        accepted = ", ".join([rule.canonical, *rule.alternatives])
        raise ValueError(f"unit {unit!r} is not accepted for {analyte}; use one of: {accepted}")\
            from None


class LabResultRecorded(EventData):
    """``occurred_at`` is the specimen collection time."""

    analyte: Analyte
    unit: str
    value: Number
    loinc: Annotated[str, Field(max_length=16),
                     matching(LOINC_RE, "a LOINC code (e.g. 1988-5)")] | None = None
    #: filled in when recorded; a stored payload keeps the conversion that applied then
    canonical_value: float | None = Field(None, validate_default=True)
    canonical_unit: str | None = Field(None, validate_default=True)

    @field_validator("unit")
    @classmethod
    def _accepted_unit(cls, unit: str, info: ValidationInfo) -> str:
        if trusted(info):
            return unit
        analyte = info.data.get("analyte")
        if analyte is not None:
            to_canonical(analyte, 1.0, unit)
        return unit

    @field_validator("value")
    @classmethod
    def _plausible(cls, value: float, info: ValidationInfo) -> float:
        if trusted(info):
            return value
        analyte, unit = info.data.get("analyte"), info.data.get("unit")
        if analyte is None or unit is None:
            return value
        rule = UNITS[analyte]
        canonical = to_canonical(analyte, value, unit)
        if not rule.low <= canonical <= rule.high:
            raise ValueError(
                f"{value:g} {unit} is implausible for {analyte} "
                f"(accepted {rule.low:g} to {rule.high:g} {rule.canonical})")
        return value

    @field_validator("canonical_value")
    @classmethod
    def _canonical_value(cls, given: float | None, info: ValidationInfo) -> float | None:
        """Computed when absent; when given (a stored payload) it must match."""
        if trusted(info) and given is not None:
            return given
        analyte, unit, value = (info.data.get(k) for k in ("analyte", "unit", "value"))
        if analyte is None or unit is None or value is None:
            return given  # the field errors above say what is wrong
        expected = round(to_canonical(analyte, value, unit), 6)
        if given is not None and abs(given - expected) > 1e-6 * max(1.0, abs(expected)):
            raise ValueError(f"does not match value and unit (expected {expected:g})")
        return expected

    @field_validator("canonical_unit")
    @classmethod
    def _canonical_unit(cls, given: str | None, info: ValidationInfo) -> str | None:
        analyte = info.data.get("analyte")
        if analyte is None or (trusted(info) and given is not None):
            return given
        expected = UNITS[analyte].canonical
        if given is not None and given != expected:
            raise ValueError(f"must be {expected} for {analyte}")
        return expected
