"""Delivery receipts: the provider's latest status of each delivery and when it was polled.

Revision ID: 0009_receipts
Revises: 0010_oncall
Create Date: 2026-12-02
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from events.store.types import UTCDateTime


revision: str = '0009_receipts'
down_revision: str | None = '0010_oncall'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column('alert_deliveries', sa.Column('receipt', sa.String(length=16), nullable=True))
    op.add_column('alert_deliveries', sa.Column('receipt_code', sa.Integer(), nullable=True))
    op.add_column('alert_deliveries', sa.Column('receipt_at', UTCDateTime(), nullable=True))
    op.add_column('alert_deliveries', sa.Column('checked_at', UTCDateTime(), nullable=True))
    op.create_index('ix_alert_deliveries_provider_id', 'alert_deliveries', ['provider_id'],
                    unique=False)


def downgrade() -> None:
    op.drop_index('ix_alert_deliveries_provider_id', table_name='alert_deliveries')
    with op.batch_alter_table('alert_deliveries') as batch:
        batch.drop_column('checked_at')
        batch.drop_column('receipt_at')
        batch.drop_column('receipt_code')
        batch.drop_column('receipt')
