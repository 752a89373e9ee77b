"""Worker heartbeats: liveness, last cycle and channels down, per worker process.

Revision ID: 0006_worker_state
Revises: 0008_links
Create Date: 2026-12-01
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from events.store.types import UTCDateTime


revision: str = '0006_worker_state'
down_revision: str | None = '0008_links'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('worker_heartbeats',
    sa.Column('worker_id', sa.String(length=64), nullable=False),
    sa.Column('host', sa.String(length=255), nullable=False),
    sa.Column('pid', sa.Integer(), nullable=False),
    sa.Column('version', sa.String(length=32), nullable=False),
    sa.Column('started_at', UTCDateTime(), nullable=False),
    sa.Column('beat_at', UTCDateTime(), nullable=False),
    sa.Column('expires_at', UTCDateTime(), nullable=False),
    sa.Column('cycle_started_at', UTCDateTime(), nullable=True),
    sa.Column('cycle_ended_at', UTCDateTime(), nullable=True),
    sa.Column('channels_down', sa.Text(), nullable=False),
    sa.Column('stopped_at', UTCDateTime(), nullable=True),
    sa.PrimaryKeyConstraint('worker_id', name=op.f('pk_worker_heartbeats'))
    )


def downgrade() -> None:
    op.drop_table('worker_heartbeats')
