"""The migrated schema is what the metadata says, on each database (``alembic check`` as a
test), and the events indexes that only PostgreSQL keeps are absent on SQLite, where the
queries that could use them plan without them."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import func, inspect, select
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.engine import make_url

import alerts.tables  # noqa: F401  (the outbox tables join the one metadata)
import web.tables  # noqa: F401
from events.store.engine import make_engine
from events.store.sql import _COLUMNS
from events.store.sqlite import SQLiteRecorder
from events.store.tables import events as T
from events.store.tables import included_on, only_on
from tracker import db
from tracker.schema import metadata
from web.access import STREAM_PREFIX

POSTGRES_ONLY = {"ix_events_tx_position", "ix_events_recorded_at"}


def test_the_migrated_schema_matches_the_metadata(db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={
                "compare_type": True, "include_object": included_on(conn.dialect.name)})
            assert compare_metadata(context, metadata) == []
            names = {i["name"] for i in inspect(conn).get_indexes("events")}
            if conn.dialect.name == "sqlite":
                assert not names & POSTGRES_ONLY
            else:
                assert names >= POSTGRES_ONLY
    finally:
        engine.dispose()


def test_a_dialect_only_index_is_compared_on_its_dialect_only() -> None:
    """Without the filter a SQLite database would lack the index (the check can fail)."""
    [index] = [i for i in T.indexes if i.name == "ix_events_recorded_at"]
    assert index.info["dialects"] == ("postgresql",)
    assert included_on("postgresql")(index, index.name, "index", False, None)
    assert not included_on("sqlite")(index, index.name, "index", False, None)
    assert included_on("sqlite")(T, "events", "table", False, None)
    assert only_on("postgresql", index) is index


def test_sqlite_downgrade_restores_the_indexes_and_upgrade_drops_them(tmp_path: object) -> None:
    url = f"sqlite:///{tmp_path}/m.db"
    db.upgrade(url)
    path = str(make_url(url).database)

    def indexes() -> set[str]:
        with sqlite3.connect(path) as c:
            return {r[0] for r in c.execute(
                "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'events'")}

    assert not indexes() & POSTGRES_ONLY

    command.downgrade(db.alembic_config(url), "0011_api_tokens")
    assert indexes() >= POSTGRES_ONLY
    command.upgrade(db.alembic_config(url), "head")
    assert not indexes() & POSTGRES_ONLY


def test_sqlite_plans_keep_their_indexes_without_them(tmp_path: object) -> None:
    """The events queries that touch tx or recorded_at (the readers, the tail, the
    known-at filters, the access log's newest-first scan, count) still plan on the rowid
    or the (stream, version) index, or were a scan already."""
    url = f"sqlite:///{tmp_path}/p.db"
    db.upgrade(url)
    recorder = SQLiteRecorder(make_engine(url))
    known = datetime(2025, 1, 1, tzinfo=UTC)
    rowid, stream = "USING INTEGER PRIMARY KEY", "USING INDEX sqlite_autoindex_events_3"
    queries = [
        (recorder.readable(select(*_COLUMNS), (0, 10)).limit(100), rowid),
        (recorder.readable(select(T.c.tx, T.c.position), None, descending=True).limit(1),
         "SCAN events"),  # the rowid backwards, LIMIT 1
        (select(*_COLUMNS).where(T.c.stream == "P1", T.c.recorded_at <= known)
         .order_by(T.c.version), stream),
        (select(T.c.data).where(T.c.type == "RecordAccessed",
                                T.c.stream.startswith(STREAM_PREFIX, autoescape=True))
         .order_by(T.c.recorded_at.desc(), T.c.position.desc()).limit(500), "SCAN events"),
        (select(func.count(), func.max(T.c.position)), "COVERING INDEX"),
    ]
    with sqlite3.connect(str(make_url(url).database)) as c:
        for q, expected in queries:
            sql = str(q.compile(dialect=sqlite_dialect.dialect(),
                                compile_kwargs={"literal_binds": True}))
            plan = " ".join(r[3] for r in c.execute(f"EXPLAIN QUERY PLAN {sql}"))
            assert expected in plan, (sql, plan)
    recorder.engine.dispose()
