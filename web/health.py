"""``/healthz`` (the process answers) and ``/readyz`` (database reachable, schema
current, worker heartbeat fresh). Neither needs a login nor shows clinical data."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import Connection, text

from tracker.bootstrap import App

#: reads the alert worker's last heartbeat; None when no worker has reported one
HeartbeatReader = Callable[[Connection], datetime | None]


class Health:
    def __init__(self, core: App, *, max_age: timedelta,
                 heartbeat: HeartbeatReader) -> None:
        self.core = core
        self.max_age = max_age
        self.heartbeat = heartbeat
        self._heads: set[str] | None = None

    def _script_heads(self) -> set[str]:
        if self._heads is None:
            from alembic.script import ScriptDirectory

            from tracker.db import alembic_config

            script = ScriptDirectory.from_config(
                alembic_config(self.core.settings.database_url))
            self._heads = set(script.get_heads())
        return self._heads

    def ready(self) -> tuple[bool, dict[str, str]]:
        """Whether this process can serve, and each check's outcome in words."""
        from alembic.runtime.migration import MigrationContext

        checks: dict[str, str] = {}
        try:
            with self.core.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
                checks["database"] = "ok"
                current = set(MigrationContext.configure(conn).get_current_heads())
                checks["schema"] = ("ok" if current == self._script_heads()
                                    else "not current: run `cno-tracker db upgrade`")
                beat = self.heartbeat(conn)
        except Exception:
            checks["database"] = "unreachable"
            return False, checks
        now = self.core.clock.now()
        if beat is None:
            checks["worker"] = "not reported"
        else:
            age = now - beat
            checks["worker"] = "ok" if age <= self.max_age else (
                f"stale: last heartbeat {int(age.total_seconds())} s ago")
        ready = all(v in ("ok", "not reported") for v in checks.values())
        return ready, checks
