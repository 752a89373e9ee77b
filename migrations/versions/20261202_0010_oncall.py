"""Acknowledge by reply and by link: the alerts' short reply code, SMS opt-outs per staff
member, the one-time e-mail links already used.

Revision ID: 0010_oncall
Revises: 0006_worker_state
Create Date: 2026-12-02
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from events.store.types import UTCDateTime


revision: str = '0010_oncall'
down_revision: str | None = '0006_worker_state'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('alerts') as batch:
        batch.add_column(sa.Column('ack_code', sa.String(length=8), nullable=True))
        batch.create_index('ix_alerts_ack_code', ['ack_code'], unique=False)
    op.create_table('sms_opt_outs',
    sa.Column('staff_id', sa.String(length=64), nullable=False),
    sa.Column('opted_out', sa.Boolean(), nullable=False),
    sa.Column('word', sa.String(length=16), nullable=False),
    sa.Column('provider_id', sa.String(length=64), nullable=True),
    sa.Column('changed_at', UTCDateTime(), nullable=False),
    sa.Column('owner_told_at', UTCDateTime(), nullable=True),
    sa.PrimaryKeyConstraint('staff_id', name=op.f('pk_sms_opt_outs'))
    )
    op.create_table('alert_link_uses',
    sa.Column('jti', sa.String(length=32), nullable=False),
    sa.Column('alert_id', sa.String(length=36), nullable=False),
    sa.Column('used_at', UTCDateTime(), nullable=False),
    sa.Column('used_by', sa.String(length=128), nullable=False),
    sa.PrimaryKeyConstraint('jti', name=op.f('pk_alert_link_uses'))
    )


def downgrade() -> None:
    op.drop_table('alert_link_uses')
    op.drop_table('sms_opt_outs')
    with op.batch_alter_table('alerts') as batch:
        batch.drop_index('ix_alerts_ack_code')
        batch.drop_column('ack_code')
