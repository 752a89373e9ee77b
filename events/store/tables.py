"""The one ``MetaData`` of the application, with stable constraint names.

Other packages (alerts, the tracker's read model) add their tables to this same
``metadata`` so Alembic sees one schema."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Date,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from events.store.types import UTCDateTime

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)

# SQLite needs INTEGER (not BIGINT) for a rowid alias with AUTOINCREMENT.
Position = BigInteger().with_variant(Integer(), "sqlite")

events = Table(
    "events",
    metadata,
    Column("position", Position, primary_key=True, autoincrement=True),
    # PostgreSQL: the writing transaction's id (pg_current_xact_id); SQLite: 0.
    # Readers follow (tx, position) below the oldest running transaction: see sql.py.
    Column("tx", BigInteger, nullable=False),
    Column("event_id", String(36), nullable=False, unique=True),
    Column("stream", String(64), nullable=False),
    Column("version", Integer, nullable=False),
    Column("type", String(64), nullable=False),
    Column("schema_version", Integer, nullable=False),
    Column("occurred_at", UTCDateTime(), nullable=False),
    Column("occurred_on", Date, nullable=False),
    Column("recorded_at", UTCDateTime(), nullable=False),
    Column("recorded_by", String(128), nullable=False),
    Column("idempotency_key", String(200), nullable=True, unique=True),
    Column("content_hash", String(64), nullable=False),
    Column("data", Text, nullable=False),
    Column("hash", String(64), nullable=False),
    UniqueConstraint("stream", "version"),
    sqlite_autoincrement=True,
)
Index("ix_events_tx_position", events.c.tx, events.c.position)
Index("ix_events_recorded_at", events.c.recorded_at)

# Triggers that make the table append-only in the database itself.
SQLITE_TRIGGERS = [
    """CREATE TRIGGER events_no_update BEFORE UPDATE ON events
       BEGIN SELECT RAISE(ABORT, 'events are append-only: UPDATE refused'); END""",
    """CREATE TRIGGER events_no_delete BEFORE DELETE ON events
       BEGIN SELECT RAISE(ABORT, 'events are append-only: DELETE refused'); END""",
]
POSTGRES_TRIGGERS = [
    """CREATE OR REPLACE FUNCTION events_append_only() RETURNS trigger
       LANGUAGE plpgsql AS $$
       BEGIN
         RAISE EXCEPTION 'events are append-only: % refused', TG_OP
           USING ERRCODE = 'restrict_violation';
       END $$""",
    """CREATE TRIGGER events_no_update BEFORE UPDATE OR DELETE ON events
       FOR EACH ROW EXECUTE FUNCTION events_append_only()""",
    """CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON events
       FOR EACH STATEMENT EXECUTE FUNCTION events_append_only()""",
]
DROP_TRIGGERS = {
    "sqlite": [
        "DROP TRIGGER IF EXISTS events_no_update",
        "DROP TRIGGER IF EXISTS events_no_delete",
    ],
    "postgresql": [
        "DROP TRIGGER IF EXISTS events_no_truncate ON events",
        "DROP TRIGGER IF EXISTS events_no_update ON events",
        "DROP FUNCTION IF EXISTS events_append_only()",
    ],
}
