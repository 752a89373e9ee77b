"""Engines for the two supported databases, configured the same way everywhere."""

from __future__ import annotations

import os
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url

from events.store.checkpoint import checkpoint_in_background, watch_disposal


def normalise_url(url: str) -> str:
    """``postgresql://`` and ``postgres://`` mean psycopg 3 here."""
    u = make_url(url.replace("postgres://", "postgresql://", 1) if url.startswith("postgres://")
                 else url)
    if u.drivername == "postgresql":
        u = u.set(drivername="postgresql+psycopg")
    return u.render_as_string(hide_password=False)


def make_engine(url: str, **kwargs: Any) -> Engine:
    """An engine; on SQLite with WAL, a busy timeout and explicit BEGIN handling.

    SQLite writers pass ``execution_options(sqlite_begin="IMMEDIATE")`` so two writers
    queue on the database lock instead of failing when a read lock is upgraded."""
    url = normalise_url(url)
    if url.startswith("sqlite"):
        engine = create_engine(url, **kwargs)

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None  # SQLAlchemy emits BEGIN itself (below)
            cur = dbapi_conn.cursor()
            on_file = ":memory:" not in url and url not in ("sqlite://", "sqlite:///")
            if on_file:
                cur.execute("PRAGMA journal_mode=WAL")
                # checkpoints run in a background thread, not inside a commit
                cur.execute("PRAGMA wal_autocheckpoint=0")
                checkpoint_in_background(engine, os.path.abspath(str(engine.url.database)))
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        watch_disposal(engine)

        @event.listens_for(engine, "begin")
        def _on_begin(conn: Any) -> None:
            options = conn.get_execution_options()
            if options.get("isolation_level") == "AUTOCOMMIT":
                return  # each statement is its own transaction
            mode = options.get("sqlite_begin", "DEFERRED")
            conn.connection.dbapi_connection.execute(f"BEGIN {mode}")

        return engine
    # No pre-ping: it costs a round trip per checkout. A connection broken by a server
    # restart fails its statement once, SQLAlchemy then discards the whole pool, and the
    # caller's next attempt (the worker's next tick, a person's retry) gets a fresh one.
    engine = create_engine(url, **kwargs)

    @event.listens_for(engine, "connect")
    def _utc_session(dbapi_conn: Any, _record: Any) -> None:
        # timestamps come back in UTC: no per-row time-zone conversion on read
        dbapi_conn.execute("SET TIME ZONE 'UTC'")
        dbapi_conn.commit()

    return engine
