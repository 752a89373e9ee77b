"""The one ``MetaData`` of the application, with stable constraint names.

Other packages (alerts, the tracker's read model) add their tables to this same
``metadata`` so Alembic sees one schema."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

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

# SQLite needs INTEGER (not BIGINT) for a rowid alias. No AUTOINCREMENT there (migration
# 0013): events are never deleted, so the largest position is never reused anyway, and
# AUTOINCREMENT wrote sqlite_sequence on every commit.
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
    # unique where present: a partial index (migration 0014), see below
    Column("idempotency_key", String(200), nullable=True),
    Column("content_hash", String(64), nullable=False),
    Column("data", Text, nullable=False),
    Column("hash", String(64), nullable=False),
    UniqueConstraint("stream", "version"),
)


def only_on(dialect: str, index: Index) -> Index:
    """``index`` exists on ``dialect`` only: ``create_all`` skips it elsewhere, and so
    does Alembic's comparison (:func:`included_on`, in the migrations' ``env.py``)."""
    index.info["dialects"] = (dialect,)
    return index.ddl_if(dialect=dialect)


def included_on(dialect: str) -> Callable[[Any, str | None, str, bool, Any], bool]:
    """Alembic's ``include_object`` for a database of ``dialect``: a schema object marked
    for other databases only (:func:`only_on`) is left out of the comparison."""

    def include(obj: Any, _name: str | None, _type: str, _reflected: bool,
                _compare_to: Any) -> bool:
        dialects = getattr(obj, "info", {}).get("dialects")
        return dialects is None or dialect in dialects
    return include


# PostgreSQL's readers follow (tx, position) below READ_BOUND. On SQLite tx is always 0
# and readers follow the rowid, and no SQLite query plan used either index (migration
# 0012 drops them there): each was one more b-tree written by every commit.
only_on("postgresql", Index("ix_events_tx_position", events.c.tx, events.c.position))
only_on("postgresql", Index("ix_events_recorded_at", events.c.recorded_at))

# Idempotency keys are unique where there is one: a partial unique index (migration 0014)
# instead of a unique constraint, so an event without a key writes no index entry (a
# NULL-keyed event wrote one into the constraint's b-tree on every commit: on SQLite one
# more page in the WAL). Key look-ups (``idempotency_key IN (...)``, ``= ...``) imply
# ``IS NOT NULL`` and plan on it on both databases. The name is the constraint's, so a
# refusal still names ``uq_events_idempotency_key``.
Index("uq_events_idempotency_key", events.c.idempotency_key, unique=True,
      sqlite_where=events.c.idempotency_key.is_not(None),
      postgresql_where=events.c.idempotency_key.is_not(None))

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
