"""Alembic environment: the application's single MetaData, and on PostgreSQL an advisory
lock so two releases never migrate the same database at once."""

from __future__ import annotations

import os

from alembic import context
from sqlalchemy import Connection, text

import alerts.tables  # noqa: F401  (registers the alert outbox tables)
import web.tables  # noqa: F401  (registers the web sessions table)
from events.store.engine import make_engine
from events.store.tables import included_on
from tracker.schema import metadata

MIGRATION_LOCK_KEY = 0x434E4F5452  # "CNOTR"

config = context.config


def database_url() -> str:
    url = config.attributes.get("database_url") or os.environ.get("CNO_TRACKER_DATABASE_URL")
    return str(url or config.get_main_option("sqlalchemy.url") or "sqlite:///cno-tracker.db")


def run_with(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        include_object=included_on(connection.dialect.name),
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        run_with(connection)
        return
    engine = make_engine(database_url())
    try:
        with engine.connect() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": MIGRATION_LOCK_KEY})
                conn.commit()
            try:
                run_with(conn)
            finally:
                if conn.dialect.name == "postgresql":
                    conn.rollback()
                    conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": MIGRATION_LOCK_KEY})
                    conn.commit()
    finally:
        engine.dispose()


if context.is_offline_mode():
    context.configure(url=database_url(), target_metadata=metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    run_migrations_online()
