"""Settings from the environment (prefix ``CNO_TRACKER_``), built once in the entry point
and passed down. Secrets are ``SecretStr``: they never print, log or appear in a repr."""

from __future__ import annotations

from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from tracker.errors import ConfigurationError

PLACEHOLDERS = {"changeme", "change-me", "secret", "password", "xxx", "todo", ""}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CNO_TRACKER_", extra="ignore")

    environment: Literal["development", "production"] = "development"
    database_url: str = "sqlite:///cno-tracker.db"
    timezone: str | None = None  # overrides the protocol's centre time zone
    protocol_file: Path | None = None
    roster_file: Path | None = None

    # delivery (issue: alert worker); all optional for the embedded default
    alert_log_file: Path | None = None
    twilio_account_sid: str | None = None
    twilio_auth_token: SecretStr | None = None
    twilio_from_number: str | None = None
    twilio_base_url: str | None = None  # a Twilio-compatible endpoint (tests, proxies)
    smtp_host: str | None = None
    smtp_port: int = 587
    smtp_security: Literal["none", "starttls", "ssl"] = "starttls"
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_sender: str | None = None
    smtp_timeout_seconds: float = 10.0

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                ZoneInfo(value)
            except (ZoneInfoNotFoundError, ValueError):
                raise ValueError(f"unknown time zone {value!r}") from None
        return value

    @model_validator(mode="after")
    def _no_placeholders_in_production(self) -> Settings:
        if self.environment == "production":
            if self.database_url.startswith("sqlite"):
                raise ValueError("production needs a PostgreSQL CNO_TRACKER_DATABASE_URL")
            for name in ("twilio_auth_token", "smtp_password"):
                secret = getattr(self, name)
                if secret is not None and secret.get_secret_value().lower() in PLACEHOLDERS:
                    raise ValueError(f"CNO_TRACKER_{name.upper()} is a placeholder")
        return self


def load_settings() -> Settings:
    try:
        return Settings()
    except ValidationError as exc:
        reasons = "; ".join(
            f"CNO_TRACKER_{'.'.join(str(x) for x in e['loc']).upper() or 'SETTINGS'}: {e['msg']}"
            for e in exc.errors())
        raise ConfigurationError(f"invalid settings: {reasons}") from None
