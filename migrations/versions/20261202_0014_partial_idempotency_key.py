"""events.idempotency_key unique where present: a partial unique index, not a constraint.

A unique constraint on a nullable column still stores an entry for every NULL: each
event appended without an idempotency key wrote one more b-tree page (on SQLite one more
WAL frame per commit, about a fifth of a single append's pages). The partial unique
index ``WHERE idempotency_key IS NOT NULL`` refuses the same duplicates (NULLs were never
compared) and holds only keyed events. It keeps the constraint's name, so a refusal
still names ``uq_events_idempotency_key``. Key look-ups (``= key``, ``IN (...)``, and
PostgreSQL's ``IN (SELECT unnest(...))``) imply ``IS NOT NULL`` and plan on it.

PostgreSQL: the constraint is dropped and the index built in the same transaction.
SQLite cannot drop a table's inline UNIQUE constraint: the table is rebuilt as in 0013
(created anew without it, filled in rowid order, renamed; triggers dropped and created
again), then the index is created.

Revision ID: 0014_partial_idempotency_key
Revises: 0013_sqlite_events_rowid
Create Date: 2026-12-02
"""
import re
from collections.abc import Callable, Sequence

from alembic import op
from sqlalchemy import text

from events.store.tables import DROP_TRIGGERS, SQLITE_TRIGGERS

revision: str = '0014_partial_idempotency_key'
down_revision: str | None = '0013_sqlite_events_rowid'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NAME = "uq_events_idempotency_key"
WHERE = "idempotency_key IS NOT NULL"
#: the inline constraint as SQLAlchemy wrote it into SQLite's table statement
_CONSTRAINT = re.compile(r"CONSTRAINT uq_events_idempotency_key UNIQUE \(idempotency_key\),\s*")
_BEFORE = "CONSTRAINT uq_events_stream_version UNIQUE"


def _sqlite_rebuild(change: Callable[[str], str]) -> None:
    bind = op.get_bind()
    ddl = bind.execute(text(
        "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'events'")).scalar_one()
    for statement in DROP_TRIGGERS["sqlite"]:
        op.execute(statement)
    # a renamed table's stored statement names it quoted: CREATE TABLE "events"
    op.execute(change(re.sub(r'^CREATE TABLE "?events"?', "CREATE TABLE events_rebuilt", ddl,
                             count=1)))
    op.execute("INSERT INTO events_rebuilt SELECT * FROM events ORDER BY position")
    op.execute("DROP TABLE events")
    op.execute("ALTER TABLE events_rebuilt RENAME TO events")
    for statement in SQLITE_TRIGGERS:
        op.execute(statement)


def _without(ddl: str) -> str:
    new, found = _CONSTRAINT.subn("", ddl, count=1)
    if not found:
        raise RuntimeError(f"events table without the {NAME} constraint: {ddl}")
    return new


def _with(ddl: str) -> str:
    if _BEFORE not in ddl or NAME in ddl:
        raise RuntimeError(f"unexpected events table: {ddl}")
    # where 0001 put it: the autoindexes keep their numbers
    return ddl.replace(_BEFORE, f"CONSTRAINT {NAME} UNIQUE (idempotency_key), \n\t{_BEFORE}", 1)


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        _sqlite_rebuild(_without)
    else:
        op.drop_constraint(NAME, "events", type_="unique")
    op.create_index(NAME, "events", ["idempotency_key"], unique=True,
                    sqlite_where=text(WHERE), postgresql_where=text(WHERE))


def downgrade() -> None:
    op.drop_index(NAME, table_name="events")
    if op.get_bind().dialect.name == "sqlite":
        _sqlite_rebuild(_with)
    else:
        op.create_unique_constraint(NAME, "events", ["idempotency_key"])
