"""Shared building blocks of the event vocabulary."""

from __future__ import annotations

import re
from datetime import date, datetime
from functools import lru_cache
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
)

#: every pattern here is applied with ``fullmatch``: ``$`` alone would also match before a
#: final newline, and ``"P0001\n"`` would become a second patient printed like ``P0001``
PATIENT_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
IDENTIFIER_RE = re.compile(r"[A-Za-z0-9._:-]+")
LOINC_RE = re.compile(r"[0-9]{1,7}-[0-9]")
#: Unicode control characters (C0, DEL, C1): never part of a name, key or note
CONTROL_RE = re.compile(r"[\x00-\x1f\x7f-\x9f]")
#: PATIENT_RE with at least one (ASCII) digit: a valid reference, decided in one match
_VALID_PATIENT_RE = re.compile(r"(?=[^0-9]*[0-9])[A-Za-z0-9][A-Za-z0-9._-]{0,63}")

#: the clinical calendar: nothing clinical happened before 1900, and the upper bound keeps
#: every instant convertible to any offset and time zone (no overflow at year 9999)
EARLIEST = date(1900, 1, 1)
LATEST = date(2199, 12, 31)


def check_patient_ref(value: str) -> str:
    """A pseudonymous reference: the contract's pattern, and at least one digit.

    References made only of letters (``maria.lopez``, ``Garcia``) have the shape of a
    name; a pseudonymous reference from a registry always carries a number.
    """
    if type(value) is str and _VALID_PATIENT_RE.fullmatch(value) is not None:
        return value  # the common case in one match; the checks below say what is wrong
    if not isinstance(value, str) or not PATIENT_RE.fullmatch(value):
        raise ValueError(
            "must match ^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$ (letters, digits, '.', '_', '-')")
    if not any(c.isdigit() for c in value):
        raise ValueError(
            "looks like a name: a pseudonymous reference must contain a digit (e.g. P0007)")
    return value


PatientRef = Annotated[str, BeforeValidator(check_patient_ref)]


def matching(regex: re.Pattern[str], shape: str) -> AfterValidator:
    """A validator refusing any value that is not *wholly* of ``regex``'s shape (skipped
    for trusted stored payloads, like every value check written in Python)."""
    def check(value: str, info: ValidationInfo) -> str:
        if not trusted(info) and regex.fullmatch(value) is None:
            raise ValueError(f"must be {shape}")
        return value
    return AfterValidator(check)


def no_control_characters(value: str) -> str:
    if CONTROL_RE.search(value):
        raise ValueError("contains a control character (e.g. NUL or a line break)")
    return value


def no_null(value: str, info: ValidationInfo) -> str:
    """Free text may hold line breaks and tabs, never NUL (PostgreSQL text refuses it)."""
    if not trusted(info) and "\x00" in value:
        raise ValueError("contains a NUL character")
    return value


def _in_calendar(day: date) -> None:
    if not EARLIEST <= day <= LATEST:
        raise ValueError(f"must be between {EARLIEST} and {LATEST}")


#: a local clinical date, ISO 8601 (strict JSON parsing: YYYY-MM-DD, checked natively)
ClinicalDate = Annotated[date, Field(ge=EARLIEST, le=LATEST)]


def parse_when(value: Any) -> date | datetime:
    """An ISO 8601 local date, or a datetime that carries its UTC offset."""
    if type(value) is str:
        return _parse_when_text(value)  # cached: an import's dates and instants repeat
    return _parse_when(value)


@lru_cache(maxsize=4096)
def _parse_when_text(value: str) -> date | datetime:
    """``parse_when`` of a text (dates and datetimes are immutable; a refusal, an
    exception, is not cached)."""
    return _parse_when(value)


def _parse_when(value: Any) -> date | datetime:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("a datetime needs a UTC offset (e.g. 2015-03-02T09:30:00+01:00)")
        _in_calendar(value.date())
        return value
    if isinstance(value, date):
        _in_calendar(value)
        return value
    if isinstance(value, str):
        if len(value) == 10:
            try:
                day = date.fromisoformat(value)
            except ValueError:
                pass
            else:
                _in_calendar(day)
                return day
        else:
            try:
                parsed = datetime.fromisoformat(value)
            except ValueError:
                parsed = None
            if parsed is not None:
                if parsed.tzinfo is None:
                    raise ValueError(
                        "a datetime needs a UTC offset (e.g. 2015-03-02T09:30:00+01:00)")
                _in_calendar(parsed.date())
                return parsed
    raise ValueError("must be an ISO 8601 date (2015-03-02) or datetime with offset")


When = Annotated[date | datetime, BeforeValidator(parse_when)]

Site = Literal[
    "clavicle", "sternum", "rib", "spine", "sacrum", "pelvis", "femur", "tibia", "fibula",
    "talus", "calcaneus", "metatarsal", "humerus", "radius", "ulna", "hand", "mandible", "other",
]
Side = Literal["left", "right", "midline"]
Drug = Literal[
    "ibuprofen", "naproxen", "prednisone", "methotrexate", "adalimumab", "infliximab",
    "etanercept", "pamidronate", "zoledronic_acid", "calcium", "vitamin_d", "antibiotic",
    "paracetamol", "other",
]

Text = Annotated[str, Field(min_length=1, max_length=500),
                 AfterValidator(no_null)]
Identifier = Annotated[str, Field(min_length=1, max_length=64),
                       matching(IDENTIFIER_RE, "letters, digits, '.', '_', ':' or '-'")]


Number = Annotated[float, Field(allow_inf_nan=False)]
PositiveNumber = Annotated[float, Field(gt=0, allow_inf_nan=False)]


class EventData(BaseModel):
    """Base of every event's ``data``: strict, immutable, unknown fields refused."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    #: the schema version written today; older payloads are upcast before validation
    schema_version: ClassVar[int] = 1
    #: whether ``cno-tracker import`` and ``record`` accept this type from outside
    importable: ClassVar[bool] = True


#: validation context for payloads read back from the store: they were validated when
#: written and the hash chain guards them, so value checks written in Python are skipped
#: (types and structure are still checked natively)
TRUSTED = {"trusted": True}


def trusted(info: Any) -> bool:
    return bool(info.context and info.context.get("trusted"))


class Lesion(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)
    site: Site
    side: Side | None = None


class ImagingLesion(Lesion):
    active: bool | None = None
    findings: list[Text] = Field(default_factory=list, max_length=20)
