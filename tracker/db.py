"""Migrations run from the application: ``cno-tracker db upgrade`` and first use of SQLite.

Alembic is configured in code, not from ``alembic.ini`` (which only serves the ``alembic``
command in a checkout): the migration scripts are found inside the installed package
(``tracker/migrations``, where the wheel puts the repository's ``migrations/`` folder) or,
in a source checkout and an editable install, beside the packages."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Engine

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

    command.upgrade(alembic_config(url), revision)


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
