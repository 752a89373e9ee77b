"""SQLite: events.position a plain rowid alias, without AUTOINCREMENT.

AUTOINCREMENT made every insert also update ``sqlite_sequence``: one more b-tree written
by every commit. What it adds over a plain ``INTEGER PRIMARY KEY`` is only that the
number of a *deleted* largest row is never reused, and events are never deleted (the
``events_no_delete`` trigger refuses it): a new position is still one more than the
largest committed one, so positions stay in commit order (writers hold the database
lock) and a rolled-back insert's number is reused exactly as before (the sequence rolled
back with it). PostgreSQL: nothing changes.

The table is rebuilt (SQLite cannot change a column's AUTOINCREMENT in place): created
anew, filled from the old one in rowid order, renamed; the append-only triggers are
dropped first and created again.

Revision ID: 0013_sqlite_events_rowid
Revises: 0012_sqlite_event_indexes
Create Date: 2026-12-02
"""
import re
from collections.abc import Sequence

from alembic import op
from sqlalchemy import text

from events.store.tables import DROP_TRIGGERS, SQLITE_TRIGGERS

revision: str = '0013_sqlite_events_rowid'
down_revision: str | None = '0012_sqlite_event_indexes'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_WITH = "PRIMARY KEY AUTOINCREMENT"
_WITHOUT = "PRIMARY KEY"


def _rebuild(old: str, new: str) -> None:
    bind = op.get_bind()
    ddl = bind.execute(text(
        "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'events'")).scalar_one()
    if old not in ddl:
        raise RuntimeError(f"events table without {old!r}: {ddl}")
    for statement in DROP_TRIGGERS["sqlite"]:
        op.execute(statement)
    # a renamed table's stored statement names it quoted: CREATE TABLE "events"
    op.execute(re.sub(r'^CREATE TABLE "?events"?', "CREATE TABLE events_rebuilt", ddl,
                      count=1).replace(old, new, 1))
    op.execute("INSERT INTO events_rebuilt SELECT * FROM events ORDER BY position")
    op.execute("DROP TABLE events")
    op.execute("ALTER TABLE events_rebuilt RENAME TO events")
    for statement in SQLITE_TRIGGERS:
        op.execute(statement)


def upgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    _rebuild(_WITH, _WITHOUT)
    op.execute("DELETE FROM sqlite_sequence WHERE name = 'events'")


def downgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    _rebuild(_WITHOUT, _WITH)
    # AUTOINCREMENT continues after the largest stored position
    op.execute("INSERT INTO sqlite_sequence (name, seq) "
               "SELECT 'events', coalesce(max(position), 0) FROM events")
