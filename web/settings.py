"""The web application's settings (prefix ``CNO_TRACKER_``), built once in the entry point
beside :class:`tracker.settings.Settings` and passed to :func:`web.app.create_app`."""

from __future__ import annotations

from datetime import timedelta

from pydantic import Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from tracker.errors import ConfigurationError


class WebSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CNO_TRACKER_", extra="ignore")

    #: the address staff reach the application at; links in SMS and e-mail start with it
    public_url: str | None = None
    session_idle_minutes: float = Field(default=15, gt=0)
    session_absolute_hours: float = Field(default=12, gt=0)
    #: /readyz fails when the worker's last heartbeat is older than this
    heartbeat_max_age_seconds: float = Field(default=300, gt=0)
    #: the bearer token Prometheus presents at /metrics (unset: /metrics answers 404)
    metrics_token: SecretStr | None = None
    #: the ward list reuses a list refreshed less than this many seconds ago without
    #: catching the read model up (0: every request catches up); see web.wardcache
    ward_refresh_seconds: float = Field(default=2.0, ge=0)
    #: processes serving requests (uvicorn workers, `--workers`), each with its own caches
    web_workers: int = Field(default=1, ge=1, le=64)
    #: requests each process runs at once (the thread pool of the synchronous routes); the
    #: database pool gets as many connections unless CNO_TRACKER_DB_POOL_SIZE says otherwise
    web_threads: int = Field(default=20, ge=1, le=200)
    #: POST /fhir refuses a body larger than this (413)
    fhir_max_bytes: int = Field(default=10 * 1024 * 1024, gt=0)

    @property
    def idle(self) -> timedelta:
        return timedelta(minutes=self.session_idle_minutes)

    @property
    def absolute(self) -> timedelta:
        return timedelta(hours=self.session_absolute_hours)

    @property
    def https(self) -> bool:
        return (self.public_url or "").lower().startswith("https://")


def load_web_settings() -> WebSettings:
    try:
        return WebSettings()
    except ValidationError as exc:
        reasons = "; ".join(
            f"CNO_TRACKER_{'.'.join(str(x) for x in e['loc']).upper()}: {e['msg']}"
            for e in exc.errors())
        raise ConfigurationError(f"invalid settings: {reasons}") from None
