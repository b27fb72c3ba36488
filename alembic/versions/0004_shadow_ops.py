"""shadow ops: alert flags, channels, deliveries

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22 01:48:46.389727
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0004'
down_revision: str | Sequence[str] | None = '0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('alert_channels',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('kind', sa.Enum('webhook', 'log', name='channelkind', native_enum=False, length=16), nullable=False),
    sa.Column('url', sa.String(length=1000), nullable=True),
    sa.Column('sites', sa.JSON(), nullable=False),
    sa.Column('enabled', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_alert_channels')),
    sa.UniqueConstraint('name', name=op.f('uq_alert_channels_name'))
    )
    op.create_table('alert_deliveries',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('alert_id', sa.Integer(), nullable=False),
    sa.Column('channel_id', sa.Integer(), nullable=False),
    sa.Column('status', sa.Enum('pending', 'delivered', 'dead', name='deliverystatus', native_enum=False, length=16), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('next_attempt_at', sa.DateTime(), nullable=True),
    sa.Column('claimed_until', sa.DateTime(), nullable=True),
    sa.Column('last_error', sa.String(length=1000), nullable=True),
    sa.Column('delivered_at', sa.DateTime(), nullable=True),
    sa.ForeignKeyConstraint(['alert_id'], ['alerts.id'], name=op.f('fk_alert_deliveries_alert_id_alerts'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['channel_id'], ['alert_channels.id'], name=op.f('fk_alert_deliveries_channel_id_alert_channels'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_alert_deliveries')),
    sa.UniqueConstraint('alert_id', 'channel_id', name=op.f('uq_alert_deliveries_alert_id_channel_id'))
    )
    with op.batch_alter_table('alert_deliveries', schema=None) as batch_op:
        batch_op.create_index('ix_alert_deliveries_status_next_attempt_at', ['status', 'next_attempt_at'], unique=False)

    op.create_table('alert_flags',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('prediction_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('frame_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('site_id', sa.Integer(), nullable=False),
    sa.Column('alert_id', sa.Integer(), nullable=True),
    sa.Column('stage', sa.Enum('manual', 'limited', 'expanded', name='stage', native_enum=False, length=16), nullable=False),
    sa.Column('outcome', sa.Enum('alert', 'merged', 'no_alert', 'stale', name='flagoutcome', native_enum=False, length=16), nullable=False),
    sa.Column('processed_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['alert_id'], ['alerts.id'], name=op.f('fk_alert_flags_alert_id_alerts'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['frame_id'], ['frames.id'], name=op.f('fk_alert_flags_frame_id_frames'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['prediction_id'], ['predictions.id'], name=op.f('fk_alert_flags_prediction_id_predictions'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['site_id'], ['sites.id'], name=op.f('fk_alert_flags_site_id_sites'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_alert_flags')),
    sa.UniqueConstraint('prediction_id', name=op.f('uq_alert_flags_prediction_id'))
    )
    with op.batch_alter_table('alert_flags', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_alert_flags_alert_id'), ['alert_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_alert_flags_frame_id'), ['frame_id'], unique=False)

    with op.batch_alter_table('alerts', schema=None) as batch_op:
        batch_op.add_column(sa.Column('source', sa.Enum('model', 'ranger', name='alertsource', native_enum=False, length=16), nullable=False, server_default='model'))
        batch_op.add_column(sa.Column('decision_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('flag_count', sa.Integer(), nullable=False, server_default='1'))
        batch_op.add_column(sa.Column('last_flag_at', sa.DateTime(), nullable=True))
        batch_op.create_index('ix_alerts_camera_id_last_flag_at', ['camera_id', 'last_flag_at'], unique=False)
        batch_op.create_index('ix_alerts_site_id_status_created_at', ['site_id', 'status', 'created_at'], unique=False)
        batch_op.create_foreign_key(batch_op.f('fk_alerts_decision_id_decisions'), 'decisions', ['decision_id'], ['id'], ondelete='SET NULL')



def downgrade() -> None:
    with op.batch_alter_table('alerts', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_alerts_decision_id_decisions'), type_='foreignkey')
        batch_op.drop_index('ix_alerts_site_id_status_created_at')
        batch_op.drop_index('ix_alerts_camera_id_last_flag_at')
        batch_op.drop_column('last_flag_at')
        batch_op.drop_column('flag_count')
        batch_op.drop_column('decision_id')
        batch_op.drop_column('source')

    with op.batch_alter_table('alert_flags', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_alert_flags_frame_id'))
        batch_op.drop_index(batch_op.f('ix_alert_flags_alert_id'))

    op.drop_table('alert_flags')
    with op.batch_alter_table('alert_deliveries', schema=None) as batch_op:
        batch_op.drop_index('ix_alert_deliveries_status_next_attempt_at')

    op.drop_table('alert_deliveries')
    op.drop_table('alert_channels')
