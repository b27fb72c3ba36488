"""ingest: camera leases, camera health events, frames whose file is missing

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22 01:55:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0003'
down_revision: str | Sequence[str] | None = '0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_HEALTH = ('unknown', 'online', 'degraded', 'offline', 'disabled')


def upgrade() -> None:
    op.create_table('camera_health_events',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('camera_id', sa.Integer(), nullable=False),
    sa.Column('from_health', sa.Enum(*_HEALTH, name='camerahealth', native_enum=False, length=16), nullable=False),
    sa.Column('to_health', sa.Enum(*_HEALTH, name='camerahealth', native_enum=False, length=16), nullable=False),
    sa.Column('reason', sa.String(length=1000), nullable=False),
    sa.Column('at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['camera_id'], ['cameras.id'], name=op.f('fk_camera_health_events_camera_id_cameras'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_camera_health_events'))
    )
    with op.batch_alter_table('camera_health_events', schema=None) as batch_op:
        batch_op.create_index('ix_camera_health_events_camera_id_at', ['camera_id', 'at'], unique=False)
    with op.batch_alter_table('cameras', schema=None) as batch_op:
        batch_op.add_column(sa.Column('lease_owner', sa.String(length=100), nullable=True))
        batch_op.add_column(sa.Column('lease_until', sa.DateTime(), nullable=True))
    with op.batch_alter_table('frames', schema=None) as batch_op:
        batch_op.add_column(sa.Column('file_missing_at', sa.DateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('frames', schema=None) as batch_op:
        batch_op.drop_column('file_missing_at')
    with op.batch_alter_table('cameras', schema=None) as batch_op:
        batch_op.drop_column('lease_until')
        batch_op.drop_column('lease_owner')
    with op.batch_alter_table('camera_health_events', schema=None) as batch_op:
        batch_op.drop_index('ix_camera_health_events_camera_id_at')
    op.drop_table('camera_health_events')
