"""Settings from the environment (prefix ``CNO_TRACKER_``), built once in the entry point
and passed down. Secrets are ``SecretStr``: they never print, log or appear in a repr."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from tracker.errors import ConfigurationError
from tracker.seals import SealKeys

PLACEHOLDERS = {"changeme", "change-me", "change_me", "secret", "password", "xxx", "todo",
                "tbd", "fixme", "placeholder", "default", "test", "example", "none", "null",
                "your-token", "your_token", "token", "...", "…", ""}
#: Twilio's identifier shapes: an account SID, an auth token, a Messaging Service SID
TWILIO_ACCOUNT_SID_RE = re.compile(r"AC[0-9a-f]{32}")
TWILIO_AUTH_TOKEN_RE = re.compile(r"[0-9a-f]{32}")
TWILIO_MESSAGING_SERVICE_RE = re.compile(r"MG[0-9a-f]{32}")
E164_RE = re.compile(r"\+[1-9][0-9]{1,14}")
SMTP_PASSWORD_MIN = 8


def is_placeholder(value: str) -> bool:
    """``" ChangeMe "`` is ``changeme``: placeholders are compared trimmed and case-folded."""
    return value.strip().casefold() in PLACEHOLDERS


def weak_secrets(settings: Settings) -> list[str]:
    """Why production refuses these settings' secrets (empty when it does not). The
    reasons name the variable and the rule, never the value."""
    out: list[str] = []
    for name in ("twilio_account_sid", "twilio_auth_token", "twilio_from_number",
                 "smtp_username", "smtp_password"):
        value = getattr(settings, name)
        plain = value.get_secret_value() if isinstance(value, SecretStr) else value
        if plain is not None and is_placeholder(plain):
            out.append(f"CNO_TRACKER_{name.upper()} is a placeholder")
    sid, token = settings.twilio_account_sid, settings.twilio_auth_token
    if sid is not None and not is_placeholder(sid) and not TWILIO_ACCOUNT_SID_RE.fullmatch(sid):
        out.append("CNO_TRACKER_TWILIO_ACCOUNT_SID is not a Twilio account SID "
                   "('AC' and 32 hexadecimal digits)")
    if token is not None and not is_placeholder(token.get_secret_value()) \
            and not TWILIO_AUTH_TOKEN_RE.fullmatch(token.get_secret_value()):
        out.append("CNO_TRACKER_TWILIO_AUTH_TOKEN is not a Twilio auth token "
                   "(32 hexadecimal digits)")
    service = settings.twilio_messaging_service_sid
    if service is not None and not TWILIO_MESSAGING_SERVICE_RE.fullmatch(service):
        out.append("CNO_TRACKER_TWILIO_MESSAGING_SERVICE_SID is not a Messaging Service SID "
                   "('MG' and 32 hexadecimal digits)")
    key = settings.link_key
    if key is not None and (is_placeholder(key.get_secret_value())
                            or len(key.get_secret_value()) < 32):
        out.append("CNO_TRACKER_LINK_KEY is a placeholder or shorter than 32 characters")
    sender = settings.twilio_from_number
    if sender is not None and not is_placeholder(sender) and not (
            E164_RE.fullmatch(sender) or TWILIO_MESSAGING_SERVICE_RE.fullmatch(sender)):
        out.append("CNO_TRACKER_TWILIO_FROM_NUMBER is neither an E.164 number nor a "
                   "Messaging Service SID ('MG' and 32 hexadecimal digits)")
    password = settings.smtp_password
    if password is not None and not is_placeholder(password.get_secret_value()) \
            and len(password.get_secret_value()) < SMTP_PASSWORD_MIN:
        out.append(f"CNO_TRACKER_SMTP_PASSWORD is shorter than {SMTP_PASSWORD_MIN} characters")
    return out


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CNO_TRACKER_", extra="ignore")

    environment: Literal["development", "production"] = "development"
    database_url: str = "sqlite:///cno-tracker.db"
    timezone: str | None = None  # overrides the protocol's centre time zone
    protocol_file: Path | None = None
    roster_file: Path | None = None
    #: connections each process keeps open to the database (SQLAlchemy's pool); unset:
    #: 5, and `cno-tracker web` its thread count (one per request it runs at once)
    db_pool_size: int | None = Field(default=None, ge=1, le=200)

    # delivery (issue: alert worker); all optional for the embedded default
    alert_log_file: Path | None = None
    twilio_account_sid: str | None = None
    twilio_auth_token: SecretStr | None = None
    twilio_from_number: str | None = None
    twilio_base_url: str | None = None  # a Twilio-compatible endpoint (tests, proxies)
    # issue 13 (replies): a Messaging Service instead of a from number; urgent SMS expire
    twilio_messaging_service_sid: str | None = None
    twilio_urgent_validity_seconds: int = Field(default=900, ge=1, le=36000)
    #: where staff reach the web application (links in e-mail, Twilio's webhook URLs)
    public_url: str | None = None
    #: signs the one-time acknowledgement links in e-mail (at least 16 characters)
    link_key: SecretStr | None = None
    smtp_host: str | None = None
    smtp_port: int = 587
    smtp_security: Literal["none", "starttls", "ssl"] = "starttls"
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_sender: str | None = None
    smtp_timeout_seconds: float = 10.0
    # delivery receipts (docs/delivery-receipts.md): Twilio posts message statuses to
    # public_url + /twilio/status (unset: no callbacks, polling only); the polling
    receipt_poll_seconds: float = Field(default=60.0, gt=0)
    receipt_poll_batch: int = Field(default=50, ge=1, le=1000)

    # seals (tracker.seals): ID:SECRET signs; former ID:SECRET,… still verify
    seal_key: SecretStr | None = None
    seal_keys_former: SecretStr | None = Field(default=None,
                                               validation_alias="CNO_TRACKER_SEAL_KEYS")
    seal_interval_minutes: int = Field(default=60, ge=1)

    def seal_keys(self) -> SealKeys:
        return SealKeys.from_settings(
            self.seal_key.get_secret_value() if self.seal_key else None,
            self.seal_keys_former.get_secret_value() if self.seal_keys_former else None)

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                ZoneInfo(value)
            except (ZoneInfoNotFoundError, ValueError):
                raise ValueError(f"unknown time zone {value!r}") from None
        return value

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        parts = urlsplit(value.strip())
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.query \
                or parts.fragment:
            raise ValueError("must be an http(s) URL such as https://cno.example.org")
        return value.strip().rstrip("/")

    @model_validator(mode="after")
    def _readable_seal_keys(self) -> Settings:
        self.seal_keys()  # SealFormatError (a ValueError) names the entry, not the secret
        return self

    @model_validator(mode="after")
    def _no_placeholders_in_production(self) -> Settings:
        if self.environment == "production":
            if self.database_url.startswith("sqlite"):
                raise ValueError("production needs a PostgreSQL CNO_TRACKER_DATABASE_URL")
            reasons = weak_secrets(self)
            if reasons:
                raise ValueError("; ".join(reasons))
        return self


def load_settings() -> Settings:
    try:
        return Settings()
    except ValidationError as exc:
        reasons = "; ".join(
            (f"CNO_TRACKER_{'.'.join(str(x) for x in e['loc']).upper()}: " if e["loc"] else "")
            + e["msg"].removeprefix("Value error, ")
            for e in exc.errors())
        raise ConfigurationError(f"invalid settings: {reasons}") from None
