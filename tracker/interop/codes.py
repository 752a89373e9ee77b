"""Code systems at the door: LOINC analytes, UCUM unit spellings, drugs, comorbidities and
the HL7 local code map. docs/interop.md lists every code with its source.

[reading] Only serum, plasma or whole-blood codes map to a blood analyte; urine and other
specimens are skipped, because the thresholds of clinical-rules.md are serum values."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

from events.vocabulary import UNITS
from tracker.errors import ConfigurationError

LOINC_SYSTEMS = {"http://loinc.org", "urn:oid:2.16.840.1.113883.6.1", "LN", "LOINC"}
SNOMED_SYSTEMS = {"http://snomed.info/sct", "urn:oid:2.16.840.1.113883.6.96", "SCT", "SNOMED"}
RXNORM_SYSTEMS = {"http://www.nlm.nih.gov/research/umls/rxnorm", "RXNORM"}
ATC_SYSTEMS = {"http://www.whocc.no/atc", "ATC"}

#: LOINC code -> analyte (each from loinc.org/<code>; docs/interop.md has the long names)
LOINC_ANALYTES: dict[str, str] = {
    # calcium, total: mass and molar, serum/plasma and blood
    "17861-6": "calcium", "2000-8": "calcium", "49765-1": "calcium",
    # calcium, ionized
    "1994-3": "ionized_calcium", "1995-0": "ionized_calcium", "17863-2": "ionized_calcium",
    # creatinine
    "2160-0": "creatinine", "14682-9": "creatinine", "38483-4": "creatinine",
    "59826-8": "creatinine",
    "2777-1": "phosphate", "14879-1": "phosphate",
    "19123-9": "magnesium", "2601-3": "magnesium",
    "1988-5": "crp", "30522-7": "crp",
    "4537-7": "esr", "30341-2": "esr",
    "6690-2": "leukocytes", "26464-8": "leukocytes",
    "718-7": "haemoglobin",
    "777-3": "platelets", "26515-7": "platelets",
    "1989-3": "vitamin_d_25oh", "62292-8": "vitamin_d_25oh",
    "1742-6": "alt", "1743-4": "alt", "76625-3": "alt",
    "1920-8": "ast", "30239-8": "ast",
    "6768-6": "alkaline_phosphatase",
    "2731-8": "pth", "14866-8": "pth",
}
#: body weight (used for an infusion's weight, not stored as a lab)
LOINC_BODY_WEIGHT = {"29463-7", "3141-9"}

#: the drugs an infusion may carry, by RxNorm ingredient, ATC code and (lower-case) text
INFUSION_DRUGS: dict[str, str] = {
    "11473": "pamidronate", "M05BA03": "pamidronate", "pamidronate": "pamidronate",
    "77655": "zoledronic_acid", "M05BA08": "zoledronic_acid",
    "zoledronic acid": "zoledronic_acid", "zoledronate": "zoledronic_acid",
    "191831": "infliximab", "L04AB02": "infliximab", "infliximab": "infliximab",
}
#: drugs of a course (MedicationStatement / MedicationRequest)
COURSE_DRUGS: dict[str, str] = {
    **INFUSION_DRUGS,
    "5640": "ibuprofen", "M01AE01": "ibuprofen", "ibuprofen": "ibuprofen",
    "7258": "naproxen", "M01AE02": "naproxen", "naproxen": "naproxen",
    "8640": "prednisone", "H02AB07": "prednisone", "prednisone": "prednisone",
    "6851": "methotrexate", "L04AX03": "methotrexate", "L01BA01": "methotrexate",
    "methotrexate": "methotrexate",
    "327361": "adalimumab", "L04AB04": "adalimumab", "adalimumab": "adalimumab",
    "214555": "etanercept", "L04AB01": "etanercept", "etanercept": "etanercept",
}

#: SNOMED CT concept -> comorbidity of the vocabulary
SNOMED_COMORBIDITIES: dict[str, str] = {
    "24526004": "ibd",        # Inflammatory bowel disease (disorder)
    "34000006": "ibd",        # Crohn's disease (disorder)
    "64766004": "ibd",        # Ulcerative colitis (disorder)
    "9014002": "psoriasis",   # Psoriasis (disorder)
    "118600007": "lymphoma",  # Malignant lymphoma (disorder)
    "46177005": "severe_kidney_failure",   # End-stage renal disease (disorder)
    "433146000": "severe_kidney_failure",  # Chronic kidney disease stage 5 (disorder)
}


def drug_from_text(text: str | None, table: dict[str, str]) -> str | None:
    if not text:
        return None
    lowered = text.lower()
    for name, drug in table.items():
        if not name[0].isdigit() and not name[0].isupper() and name in lowered:
            return drug
    return None


def _spell(unit: str) -> str:
    return unit.strip().replace("µ", "u").replace("μ", "u").replace("^", "*").lower()


_UNIT_SPELLINGS: dict[str, dict[str, str]] = {
    analyte: {_spell(u): u for u in (rule.canonical, *rule.alternatives)}
    for analyte, rule in UNITS.items()
}


def ucum_unit(analyte: str, unit: str | None) -> str | None:
    """The unit table's spelling of ``unit`` for ``analyte`` (case, µ/u and ^/* variants of
    UCUM), or None when the unit is not accepted for it."""
    if not unit:
        return None
    return _UNIT_SPELLINGS[analyte].get(_spell(unit))


@dataclass(frozen=True)
class CodeMap:
    """HL7 local codes: (coding system, code) -> analyte."""

    codes: dict[tuple[str, str], str]

    def analyte(self, system: str, code: str) -> str | None:
        return self.codes.get((system, code))


EMPTY_CODE_MAP = CodeMap({})


def load_code_map(path: Path) -> CodeMap:
    """A TOML file of ``[[code]]`` tables with ``system``, ``code`` and ``analyte``; an
    invalid entry refuses start-up (exit 5) naming the entry and the reason."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigurationError(f"code map {path}: {exc.strerror}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigurationError(f"code map {path}: not valid TOML: {exc}") from None
    unknown = set(raw) - {"code"}
    if unknown:
        raise ConfigurationError(
            f"code map {path}: unknown table(s) {', '.join(sorted(unknown))}; use [[code]]")
    codes: dict[tuple[str, str], str] = {}
    for i, entry in enumerate(raw.get("code", []), start=1):
        where = f"code map {path}: [[code]] #{i}"
        if not isinstance(entry, dict):
            raise ConfigurationError(f"{where}: must be a table")
        extra = set(entry) - {"system", "code", "analyte"}
        if extra:
            raise ConfigurationError(f"{where}: unknown key(s) {', '.join(sorted(extra))}")
        for name in ("system", "code", "analyte"):
            if not isinstance(entry.get(name), str) or not entry[name]:
                raise ConfigurationError(f"{where}: {name} is required (a string)")
        if entry["analyte"] not in UNITS:
            raise ConfigurationError(
                f"{where}: analyte {entry['analyte']!r} is not one of {', '.join(UNITS)}")
        codes[(entry["system"], entry["code"])] = entry["analyte"]
    return CodeMap(codes)
