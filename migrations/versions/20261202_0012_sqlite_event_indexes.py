"""SQLite: drop the events indexes no SQLite query uses (each commit wrote them).

``ix_events_tx_position`` serves PostgreSQL's readers, who follow ``(tx, position)``; on
SQLite ``tx`` is always 0 and readers follow the rowid (``position``). No SQLite plan used
``ix_events_recorded_at`` to find rows: the ``recorded_at`` filters come with a stream
(the ``(stream, version)`` index) and ``web.access``'s newest-first scan is cheaper as a
table scan and a sort. ``count(*)`` now scans the narrowest other index. PostgreSQL keeps
both (``events.store.tables.only_on``).

Revision ID: 0012_sqlite_event_indexes
Revises: 0011_api_tokens
Create Date: 2026-12-02
"""
from collections.abc import Sequence

from alembic import op

revision: str = '0012_sqlite_event_indexes'
down_revision: str | None = '0011_api_tokens'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: (name, columns) of the indexes PostgreSQL keeps and SQLite drops
INDEXES = (("ix_events_tx_position", ["tx", "position"]),
           ("ix_events_recorded_at", ["recorded_at"]))


def upgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    for name, _columns in INDEXES:
        op.drop_index(name, table_name="events")


def downgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    for name, columns in INDEXES:
        op.create_index(name, "events", columns)
