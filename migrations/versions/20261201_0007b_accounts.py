"""Staff accounts: current credentials and lock-out state (history is in the event log).

Revision ID: 0007b_accounts
Revises: 0007_web
Create Date: 2026-12-01
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from events.store.types import UTCDateTime


revision: str = '0007b_accounts'
down_revision: str | None = '0007_web'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('accounts',
    sa.Column('username', sa.String(length=64), nullable=False),
    sa.Column('role', sa.String(length=64), nullable=False),
    sa.Column('member', sa.String(length=64), nullable=True),
    sa.Column('password_hash', sa.String(length=200), nullable=False),
    sa.Column('disabled', sa.Boolean(), nullable=False),
    sa.Column('failed_attempts', sa.Integer(), nullable=False),
    sa.Column('locked_until', UTCDateTime(), nullable=True),
    sa.Column('created_at', UTCDateTime(), nullable=False),
    sa.Column('updated_at', UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('username', name=op.f('pk_accounts'))
    )


def downgrade() -> None:
    op.drop_table('accounts')
