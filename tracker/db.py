"""Migrations run from the application: ``cno-tracker db upgrade`` and first use of SQLite.

A new SQLite database file is created 0600 before anything opens it (its WAL and SHM then
take the same mode); a missing folder is a configuration error.

Alembic is configured in code, not from ``alembic.ini`` (which only serves the ``alembic``
command in a checkout): the migration scripts are found inside the installed package
(``tracker/migrations``, where the wheel puts the repository's ``migrations/`` folder) or,
in a source checkout and an editable install, beside the packages."""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Engine, inspect, text
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


#: ``revision = "…"`` / ``down_revision: str | None = …`` at the start of a script's line
_REVISION_LINE = re.compile(r"^(revision|down_revision)\s*(?::[^=\n]*)?=\s*(.+?)\s*$",
                            re.MULTILINE)


def script_heads() -> set[str] | None:
    """The head revisions of the migration scripts, read from their text without importing
    Alembic or the scripts (Alembic's import is a large part of a command's start-up):
    the revisions no script names as its ``down_revision``. None when a script does not
    say both plainly (literal strings, None or a tuple): then ask Alembic."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for path in (script_location() / "versions").glob("*.py"):
        found: dict[str, object] = {}
        for name, value in _REVISION_LINE.findall(path.read_text(encoding="utf-8")):
            if name in found:
                return None
            try:
                found[name] = ast.literal_eval(value)
            except (ValueError, SyntaxError):
                return None
        rev, down = found.get("revision"), found.get("down_revision", ...)
        if not isinstance(rev, str) or down is ...:
            return None
        downs = down if isinstance(down, tuple) else (down,)
        if not all(d is None or isinstance(d, str) for d in downs):
            return None
        revisions.add(rev)
        parents.update(d for d in downs if isinstance(d, str))
    return (revisions - parents) or None


def stored_revisions(engine: Engine) -> set[str]:
    """What ``alembic_version`` holds (empty before the first migration), read with one
    query: :func:`current_revisions` without importing Alembic."""
    with engine.connect() as conn:
        if not inspect(conn).has_table("alembic_version"):
            return set()
        return {r[0] for r in conn.execute(text("SELECT version_num FROM alembic_version"))}


def is_current(engine: Engine, url: str) -> bool:
    """The database is at the scripts' head (checked at every command's start: without
    Alembic when the scripts' revisions can be read from their text)."""
    heads = script_heads()
    if heads is None:
        return current_revisions(engine) == head_revisions(url)
    return stored_revisions(engine) == heads
