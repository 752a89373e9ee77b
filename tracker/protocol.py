"""Every number the clinical rules call *configurable*, in one validated object.

Defaults are the seed paper's protocol (docs: clinical-rules.md). A centre overrides them
with a TOML file named by ``CNO_TRACKER_PROTOCOL_FILE``; each evaluation records the
protocol's fingerprint so an audit can say which thresholds applied."""

from __future__ import annotations

import hashlib
import tomllib
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from tracker.errors import ConfigurationError


class Protocol(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # §0 time
    timezone: str = "Europe/Madrid"
    clock_skew_minutes: int = Field(5, ge=0, le=1440)

    # §1 disease course
    remission_months: int = Field(6, ge=1, le=60)
    relapse_gap_months: int = Field(1, ge=1, le=24)

    # §2 diagnosis
    diagnostic_delay_months: float = Field(5.0, gt=0)

    # §3 treatment ladder
    nsaid_review_months: int = Field(1, ge=1)
    prednisone_min_mg_per_kg_day: float = Field(1.0, gt=0)
    prednisone_max_mg_per_kg_day: float = Field(2.0, gt=0)
    corticoid_warning_months: int = Field(1, ge=1)
    corticoid_urgent_days: int = Field(42, ge=1)
    anthropometry_max_age_days: int = Field(90, ge=1)

    # §4 pamidronate
    annual_cap_mg_per_kg: float = Field(11.5, gt=0)
    rolling_window_days: int = Field(365, ge=1)
    first_dose_mg_per_kg: float = Field(0.5, gt=0)
    max_dose_mg_per_kg: float = Field(1.0, gt=0)
    max_dose_mg: float = Field(60.0, gt=0)
    dose_tolerance: float = Field(0.05, ge=0, lt=1)
    cap_tolerance_mg_per_kg: float = Field(0.01, ge=0)
    cycle_gap_days: int = Field(3, ge=1)
    monthly_interval_months: int = Field(1, ge=1)
    quarterly_interval_months: int = Field(3, ge=1)

    # §5 monitoring
    baseline_labs_window_days: int = Field(30, ge=1)
    post_dose_labs_window_days: int = Field(14, ge=1)
    post_dose_labs_overdue_days: int = Field(7, ge=0)
    urine_ca_cr_threshold_mmol_mmol: float = Field(2.0, gt=0)
    renal_ultrasound_overdue_days: int = Field(30, ge=0)
    ionized_calcium_urgent_below: float = Field(1.0, gt=0)
    calcium_low_below: float = Field(2.1, gt=0)  # [reading] total calcium, mmol/L
    vitamin_d_low_below: float = Field(50.0, gt=0)

    # §6 alerts
    digest_hour: int = Field(8, ge=0, le=23)
    escalation_minutes: int = Field(120, ge=1)
    cap_warning_days: int = Field(7, ge=0)
    dose_due_lead_days: int = Field(1, ge=0)
    #: items that fell due longer ago than this are history, not news: no alert is raised
    alert_lookback_days: int = Field(14, ge=0)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r} (use an IANA name)") from None
        return value

    @field_validator("prednisone_max_mg_per_kg_day")
    @classmethod
    def _range(cls, value: float, info: object) -> float:
        low = getattr(info, "data", {}).get("prednisone_min_mg_per_kg_day", 0)
        if value < low:
            raise ValueError("must not be below prednisone_min_mg_per_kg_day")
        return value

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def fingerprint(self) -> str:
        """A short stable digest of the thresholds in force."""
        raw = orjson.dumps(self.model_dump(), option=orjson.OPT_SORT_KEYS)
        return hashlib.sha256(raw).hexdigest()[:16]


DEFAULT_PROTOCOL = Protocol()


def load_protocol(path: str | Path | None) -> Protocol:
    """The protocol from a TOML file, or the defaults; refuses invalid values clearly."""
    if path is None or str(path) == "":
        return DEFAULT_PROTOCOL
    p = Path(path)
    try:
        raw = tomllib.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigurationError(f"protocol file {p} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(f"protocol file {p} is not valid TOML: {exc}") from None
    section = raw.get("protocol", raw)
    try:
        return Protocol.model_validate(section)
    except ValidationError as exc:
        reasons = "; ".join(
            f"{'.'.join(str(x) for x in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise ConfigurationError(f"protocol file {p}: {reasons}") from None
