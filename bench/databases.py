"""Fresh, migrated databases for the benchmarks, dropped again at the end."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from events.store.engine import normalise_url
from tracker.db import upgrade


class Databases:
    """Makes ``<prefix>_<pid>_<tag>`` databases (PostgreSQL) or files in ``tmp`` (SQLite);
    :meth:`close` drops every PostgreSQL database it made, even after a failure."""

    def __init__(self, pg_url: str, tmp: Path | None = None, *, prefix: str,
                 backend: str = "postgresql") -> None:
        self.pg_url = make_url(normalise_url(pg_url))
        self.tmp = tmp or Path(tempfile.gettempdir())
        self.prefix = prefix
        self.backend = backend
        self.names: list[str] = []
        self._admin: Engine | None = None

    def admin(self) -> Engine:
        if self._admin is None:
            self._admin = create_engine(self.pg_url.set(database="postgres"),
                                        isolation_level="AUTOCOMMIT")
        return self._admin

    def fresh(self, tag: str, *, backend: str | None = None, migrate: bool = True) -> str:
        if (backend or self.backend) == "sqlite":
            path = self.tmp / f"{tag}.db"
            for suffix in ("", "-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
            url = f"sqlite:///{path}"
        else:
            name = f"{self.prefix}_{os.getpid()}_{tag}".replace("-", "_")
            with self.admin().connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
                conn.execute(text(f'CREATE DATABASE "{name}"'))
            self.names.append(name)
            url = self.pg_url.set(database=name).render_as_string(hide_password=False)
        if migrate:
            upgrade(url)
        return url

    def drop(self, url: str) -> None:
        """Drop one database made by :meth:`fresh` before the end (SQLite: remove the file)."""
        parsed = make_url(url)
        if parsed.get_backend_name() == "sqlite":
            for suffix in ("", "-wal", "-shm"):
                Path(f"{parsed.database}{suffix}").unlink(missing_ok=True)
            return
        name = parsed.database
        with self.admin().connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        if name in self.names:
            self.names.remove(name)

    def close(self) -> None:
        if self._admin is None:
            return
        with self._admin.connect() as conn:
            for name in self.names:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        self._admin.dispose()
