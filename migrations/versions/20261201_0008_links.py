"""The identity link table: hospital identifier (HMAC lookup, AES-GCM sealed) -> reference.

Revision ID: 0008_links
Revises: 0007b_accounts
Create Date: 2026-12-01
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from events.store.types import UTCDateTime


revision: str = '0008_links'
down_revision: str | None = '0007b_accounts'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('patient_links',
    sa.Column('lookup', sa.String(length=64), nullable=False),
    sa.Column('patient', sa.String(length=64), nullable=False),
    sa.Column('sealed', sa.Text(), nullable=False),
    sa.Column('linked_at', UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('lookup', name=op.f('pk_patient_links'))
    )
    with op.batch_alter_table('patient_links', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_patient_links_patient'), ['patient'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('patient_links', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_patient_links_patient'))
    op.drop_table('patient_links')
