"""The append-only seals table (signed states of the whole log) and its triggers.

Revision ID: 0005_seals
Revises: 0003_alerts
Create Date: 2026-12-01
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from events.store.types import UTCDateTime
from tracker.sealing import DROP_TRIGGERS, POSTGRES_TRIGGERS, SQLITE_TRIGGERS

revision: str = '0005_seals'
down_revision: str | None = '0003_alerts'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'seals',
        sa.Column('seal_id', sa.Integer(), nullable=False),
        sa.Column('sealed_at', UTCDateTime(), nullable=False),
        sa.Column('key_id', sa.String(length=64), nullable=False),
        sa.Column('event_count', sa.BigInteger(), nullable=False),
        sa.Column('last_position', sa.BigInteger(), nullable=False),
        sa.Column('document', sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint('seal_id', name=op.f('pk_seals')),
        sqlite_autoincrement=True,
    )
    dialect = op.get_bind().dialect.name
    for statement in POSTGRES_TRIGGERS if dialect == 'postgresql' else SQLITE_TRIGGERS:
        op.execute(statement)


def downgrade() -> None:
    for statement in DROP_TRIGGERS.get(op.get_bind().dialect.name, []):
        op.execute(statement)
    op.drop_table('seals')
