"""Databases for the tests: every store and worker test runs on SQLite and PostgreSQL.

PostgreSQL comes from CNO_TEST_POSTGRES_URL (default: the local server, trust auth). Each
test gets its own database, cloned from a migrated template and dropped afterwards. Where
PostgreSQL is missing the PostgreSQL cases are skipped, except in CI (CI=true), where a
missing PostgreSQL is a failure."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from events.store import EventStore
from events.store.engine import make_engine
from tracker import db

PG_ADMIN_URL = os.environ.get(
    "CNO_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
_pg_state: dict[str, object] = {}


def _pg_available() -> str | None:
    """None when PostgreSQL answers, else the reason."""
    if "reason" not in _pg_state:
        try:
            engine = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
            with engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            engine.dispose()
            _pg_state["reason"] = None
        except Exception as exc:
            _pg_state["reason"] = f"PostgreSQL not reachable at {PG_ADMIN_URL}: {exc}"
    return _pg_state["reason"]  # type: ignore[return-value]


def require_postgres() -> None:
    reason = _pg_available()
    if reason is not None:
        if IN_CI:
            pytest.fail(f"CI=true and {reason}")
        pytest.skip(reason)


def _admin() -> object:
    return create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")


def create_pg_database(template: str | None = None) -> str:
    name = f"cno_test_{uuid.uuid4().hex[:12]}"
    engine = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        clause = f" TEMPLATE {template}" if template else ""
        conn.execute(text(f'CREATE DATABASE "{name}"{clause}'))
    engine.dispose()
    return make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)


def drop_pg_database(url: str) -> None:
    name = make_url(url).database
    engine = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    engine.dispose()


@pytest.fixture(scope="session")
def pg_template() -> Iterator[str]:
    require_postgres()
    url = create_pg_database()
    db.upgrade(url)
    name = str(make_url(url).database)
    yield name
    drop_pg_database(url)


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "template.db"
    db.upgrade(f"sqlite:///{path}")
    return path


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A migrated, empty database of each kind."""
    if request.param == "sqlite":
        template: Path = request.getfixturevalue("sqlite_template")
        target = tmp_path / "cno.db"
        shutil.copy(template, target)
        yield f"sqlite:///{target}"
    else:
        name: str = request.getfixturevalue("pg_template")
        url = create_pg_database(template=name)
        try:
            yield url
        finally:
            drop_pg_database(url)


@pytest.fixture
def pg_url(tmp_path: Path) -> Iterator[str]:
    """A migrated, empty PostgreSQL database (for PostgreSQL-only tests)."""
    require_postgres()
    url = create_pg_database()
    db.upgrade(url)
    try:
        yield url
    finally:
        drop_pg_database(url)


@pytest.fixture
def store(db_url: str) -> Iterator[EventStore]:
    engine = make_engine(db_url)
    yield EventStore(engine)
    engine.dispose()
