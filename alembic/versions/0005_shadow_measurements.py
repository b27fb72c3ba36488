"""shadow measurements: drift events, a site's drift reference window

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-22 02:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0005'
down_revision: str | Sequence[str] | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'drift_events',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('site_id', sa.Integer(), nullable=False),
        sa.Column('model_version_id', sa.Integer(), nullable=True),
        sa.Column('window_start', sa.DateTime(), nullable=False),
        sa.Column('window_end', sa.DateTime(), nullable=False),
        sa.Column('reference_start', sa.DateTime(), nullable=False),
        sa.Column('reference_end', sa.DateTime(), nullable=False),
        sa.Column('metrics', sa.JSON(), nullable=False),
        sa.Column('thresholds', sa.JSON(), nullable=False),
        sa.Column('alarm', sa.Boolean(), nullable=False),
        sa.Column('detail', sa.String(length=2000), nullable=False),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(['model_version_id'], ['model_versions.id'], name=op.f('fk_drift_events_model_version_id_model_versions')),
        sa.ForeignKeyConstraint(['site_id'], ['sites.id'], name=op.f('fk_drift_events_site_id_sites'), ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_drift_events')),
    )
    op.create_index('ix_drift_events_site_id_created_at', 'drift_events', ['site_id', 'created_at'], unique=False)
    with op.batch_alter_table('sites', schema=None) as batch_op:
        batch_op.add_column(sa.Column('drift_reference_start', sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column('drift_reference_end', sa.DateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('sites', schema=None) as batch_op:
        batch_op.drop_column('drift_reference_end')
        batch_op.drop_column('drift_reference_start')
    op.drop_index('ix_drift_events_site_id_created_at', table_name='drift_events')
    op.drop_table('drift_events')
