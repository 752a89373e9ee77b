"""The migrated schema is what the metadata says, on each database (``alembic check`` as a
test); on SQLite the events indexes that only PostgreSQL keeps are absent (the queries
that could use them plan without them) and positions are a plain rowid (0012, 0013)."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import func, inspect, select, text
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.engine import make_url

import alerts.tables  # noqa: F401  (the outbox tables join the one metadata)
import web.tables  # noqa: F401
from events.envelope import NewEvent
from events.errors import DuplicateIdempotencyKey
from events.store import EventStore
from events.store.engine import make_engine
from events.store.sql import _COLUMNS
from events.store.sqlite import SQLiteRecorder
from events.store.tables import events as T
from events.store.tables import included_on, only_on
from tests.support.events import enrol, new_event
from tracker import db
from tracker.schema import metadata
from web.access import STREAM_PREFIX

POSTGRES_ONLY = {"ix_events_tx_position", "ix_events_recorded_at"}
KEY_INDEX = "uq_events_idempotency_key"


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


def test_sqlite_downgrade_restores_the_schema_and_upgrade_keeps_the_events(
        tmp_path: object) -> None:
    """0012/0013 both ways on SQLite: the indexes and AUTOINCREMENT come back and go
    again, the events keep their positions, the append-only triggers stay."""
    url = f"sqlite:///{tmp_path}/m.db"
    db.upgrade(url)
    path = str(make_url(url).database)
    store = EventStore(make_engine(url))
    for n in range(1, 4):
        store.append(f"P000{n}", 0, [enrol()])
    before = [(e.position, e.event_id, e.hash) for e in store.read_all()]
    store.engine.dispose()

    def schema() -> tuple[set[str], str]:
        with sqlite3.connect(path) as c:
            names = {r[0] for r in c.execute(
                "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'events'")}
            ddl = c.execute("SELECT sql FROM sqlite_master WHERE name = 'events'").fetchone()
            return names, ddl[0]

    def refused(statement: str) -> bool:
        with sqlite3.connect(path) as c:
            try:
                c.execute(statement)
            except sqlite3.DatabaseError as exc:
                return "append-only" in str(exc)
        return False

    names, ddl = schema()
    assert not names & POSTGRES_ONLY and "AUTOINCREMENT" not in ddl
    assert KEY_INDEX in names and KEY_INDEX not in ddl
    command.downgrade(db.alembic_config(url), "0011_api_tokens")
    names, ddl = schema()
    assert names >= POSTGRES_ONLY and "AUTOINCREMENT" in ddl
    assert KEY_INDEX not in names and f"{KEY_INDEX} UNIQUE (idempotency_key)" in ddl
    assert refused("DELETE FROM events") and refused("UPDATE events SET tx = 1")
    command.upgrade(db.alembic_config(url), "head")
    names, ddl = schema()
    assert not names & POSTGRES_ONLY and "AUTOINCREMENT" not in ddl
    assert KEY_INDEX in names and KEY_INDEX not in ddl
    assert refused("DELETE FROM events") and refused("UPDATE events SET tx = 1")
    store = EventStore(make_engine(url))
    try:
        assert [(e.position, e.event_id, e.hash) for e in store.read_all()] == before
        [e] = store.append("P0004", 0, [enrol()])
        assert e.position == before[-1][0] + 1
        assert store.verify() == []
    finally:
        store.engine.dispose()


def test_sqlite_plans_keep_their_indexes_without_them(tmp_path: object) -> None:
    """The events queries that touch tx or recorded_at (the readers, the tail, the
    known-at filters, the access log's newest-first scan, count) still plan on the rowid
    or the (stream, version) index, or were a scan already."""
    url = f"sqlite:///{tmp_path}/p.db"
    db.upgrade(url)
    recorder = SQLiteRecorder(make_engine(url))
    known = datetime(2025, 1, 1, tzinfo=UTC)
    rowid, stream = "USING INTEGER PRIMARY KEY", "USING INDEX sqlite_autoindex_events_2"
    key = f"USING INDEX {KEY_INDEX}"
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
        # key look-ups imply the partial index's IS NOT NULL (0014)
        (select(T.c.idempotency_key, T.c.content_hash, T.c.event_id, T.c.stream)
         .where(recorder.any_of(T.c.idempotency_key, ["k1", "k2", "k3"])), key),
        (select(T.c.event_id).where(T.c.idempotency_key == "k1"), key),
    ]
    with sqlite3.connect(str(make_url(url).database)) as c:
        for q, expected in queries:
            sql = str(q.compile(dialect=sqlite_dialect.dialect(),
                                compile_kwargs={"literal_binds": True}))
            plan = " ".join(r[3] for r in c.execute(f"EXPLAIN QUERY PLAN {sql}"))
            assert expected in plan, (sql, plan)
    recorder.engine.dispose()


def _keyed(key: str) -> NewEvent:
    return new_event("PatientEnrolled", {"birth_date": "2004-01-01", "sex": "female"}, key=key)


def test_the_key_index_holds_keyed_events_only_both_ways(db_url: str) -> None:
    """0014: the idempotency keys' index is partial (an event without a key writes no
    entry), the store's key look-up still searches it, duplicates are still refused; the
    downgrade brings the unique constraint back and the upgrade takes it away again."""
    store = EventStore(make_engine(db_url))
    try:
        store.append("P0001", 0, [enrol()])  # no key
        store.append("P0002", 0, [_keyed("k-1")])
        with store.engine.connect() as conn:
            if conn.dialect.name == "sqlite":
                entries = conn.execute(text(
                    "SELECT sum(ncell) FROM dbstat WHERE name = :n AND pagetype = 'leaf'"),
                    {"n": KEY_INDEX}).scalar_one()
                assert entries == 1
            else:
                predicate = conn.execute(text(
                    "SELECT pg_get_expr(indpred, indrelid) FROM pg_index "
                    "WHERE indexrelid = CAST(:n AS regclass) AND indisunique"),
                    {"n": KEY_INDEX}).scalar_one()
                assert predicate == "(idempotency_key IS NOT NULL)"
                conn.execute(text("SET enable_seqscan = off"))  # a tiny table: force it
                q = select(T.c.idempotency_key, T.c.content_hash).where(
                    store.recorder.any_of(T.c.idempotency_key, ["k-1", "k-2"]))
                plan = " ".join(r[0] for r in conn.execute(text("EXPLAIN " + str(
                    q.compile(conn, compile_kwargs={"literal_binds": True})))))
                assert KEY_INDEX in plan, plan
        assert set(store.find_idempotency_keys(["k-1", "k-2"])) == {"k-1"}
        with pytest.raises(DuplicateIdempotencyKey):
            store.append("P0003", 0, [_keyed("k-1")])
    finally:
        store.engine.dispose()

    def key_uniqueness() -> str:
        engine = make_engine(db_url)
        try:
            with engine.connect() as conn:
                if conn.dialect.name == "sqlite":
                    index = conn.execute(text(
                        "SELECT sql FROM sqlite_master WHERE type = 'index' AND name = :n"),
                        {"n": KEY_INDEX}).scalar()
                    table = conn.execute(text(
                        "SELECT sql FROM sqlite_master WHERE name = 'events'")).scalar_one()
                    inline = f"{KEY_INDEX} UNIQUE (idempotency_key)" in table
                else:
                    index = conn.execute(text(
                        "SELECT pg_get_expr(indpred, indrelid) FROM pg_index "
                        "WHERE indexrelid = to_regclass(:n) AND indisunique"),
                        {"n": KEY_INDEX}).scalar()
                    inline = conn.execute(text(
                        "SELECT count(*) FROM pg_constraint WHERE conname = :n AND contype = 'u'"),
                        {"n": KEY_INDEX}).scalar_one() == 1
        finally:
            engine.dispose()
        if inline:
            return "constraint"
        return "partial index" if index and "IS NOT NULL" in index else "none"

    assert key_uniqueness() == "partial index"
    command.downgrade(db.alembic_config(db_url), "0013_sqlite_events_rowid")
    assert key_uniqueness() == "constraint"
    command.upgrade(db.alembic_config(db_url), "head")
    assert key_uniqueness() == "partial index"
    store = EventStore(make_engine(db_url))
    try:
        assert store.count() == 2 and store.verify() == []
        with pytest.raises(DuplicateIdempotencyKey):
            store.append("P0003", 0, [_keyed("k-1")])
    finally:
        store.engine.dispose()
