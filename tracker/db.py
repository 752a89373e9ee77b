"""Migrations run from the application: ``cno-tracker db upgrade`` and first use of SQLite.

A new SQLite database file is created 0600 before anything opens it (its WAL and SHM then
take the same mode); a missing folder is a configuration error.

Alembic is configured in code, not from ``alembic.ini`` (which only serves the ``alembic``
command in a checkout): the migration scripts are found inside the installed package
(``tracker/migrations``, where the wheel puts the repository's ``migrations/`` folder) or,
in a source checkout and an editable install, beside the packages."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Engine
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from tracker.errors import ConfigurationError
from tracker.files import touch_private

if TYPE_CHECKING:  # Alembic loads only when a schema is checked or migrated
    from alembic.config import Config

PACKAGE = Path(__file__).resolve().parent


def script_location() -> Path:
    """The folder holding ``env.py`` and ``versions/``."""
    installed = PACKAGE / "migrations"
    if (installed / "env.py").is_file():
        return installed
    return PACKAGE.parent / "migrations"


def alembic_config(url: str) -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(script_location()))
    cfg.set_main_option("path_separator", "os")
    cfg.attributes["database_url"] = url
    return cfg


def upgrade(url: str, revision: str = "head") -> None:
    from alembic import command

    prepare_sqlite_file(url)
    command.upgrade(alembic_config(url), revision)


def prepare_sqlite_file(url: str) -> None:
    """A SQLite database file is created 0600 (its WAL and SHM follow its mode); a
    missing folder is a configuration error, not a traceback."""
    try:
        u = make_url(url)
    except ArgumentError:
        raise ConfigurationError(
            "CNO_TRACKER_DATABASE_URL is not a database URL") from None
    if not u.drivername.startswith("sqlite") or not u.database or u.database == ":memory:" \
            or u.database.startswith("file:"):
        return
    path = Path(u.database)
    if not path.parent.is_dir():
        raise ConfigurationError(
            f"cannot use the SQLite database {path}: its folder {path.parent} does not exist")
    try:
        touch_private(path)
    except OSError as exc:
        raise ConfigurationError(
            f"cannot create the SQLite database {path}: {exc.strerror}") from None


def current_revisions(engine: Engine) -> set[str]:
    """The revisions the database is at (empty before the first migration)."""
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return set(MigrationContext.configure(conn).get_current_heads())


def head_revisions(url: str) -> set[str]:
    from alembic.script import ScriptDirectory

    return set(ScriptDirectory.from_config(alembic_config(url)).get_heads())


def is_current(engine: Engine, url: str) -> bool:
    return current_revisions(engine) == head_revisions(url)
