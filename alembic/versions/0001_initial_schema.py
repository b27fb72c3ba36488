"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-21 14:02:34.177753
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0001'
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('model_versions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('path', sa.String(length=1000), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('classes', sa.JSON(), nullable=False),
    sa.Column('positive_classes', sa.JSON(), nullable=False),
    sa.Column('threshold', sa.Double(), nullable=False),
    sa.Column('role', sa.Enum('rollout', 'challenger', 'retired', name='modelrole', native_enum=False, length=16), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_model_versions')),
    sa.UniqueConstraint('name', 'sha256', name=op.f('uq_model_versions_name_sha256'))
    )
    op.create_table('users',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('role', sa.Enum('ranger', 'ops', 'admin', name='role', native_enum=False, length=16), nullable=False),
    sa.Column('password_hash', sa.String(length=255), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_users')),
    sa.UniqueConstraint('name', name=op.f('uq_users_name'))
    )
    op.create_table('sites',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('stage', sa.Enum('manual', 'limited', 'expanded', name='stage', native_enum=False, length=16), nullable=False),
    sa.Column('stage_since', sa.DateTime(), nullable=False),
    sa.Column('rollout_model_id', sa.Integer(), nullable=True),
    sa.Column('trial_start', sa.DateTime(), nullable=True),
    sa.Column('trial_end', sa.DateTime(), nullable=True),
    sa.Column('trial_scope', sa.JSON(), nullable=False),
    sa.Column('thresholds', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['rollout_model_id'], ['model_versions.id'], name=op.f('fk_sites_rollout_model_id_model_versions')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_sites')),
    sa.UniqueConstraint('name', name=op.f('uq_sites_name'))
    )
    op.create_table('cameras',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('site_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('source', sa.String(length=1000), nullable=False),
    sa.Column('interval_s', sa.Double(), nullable=False),
    sa.Column('enabled', sa.Boolean(), nullable=False),
    sa.Column('health', sa.Enum('unknown', 'online', 'degraded', 'offline', 'disabled', name='camerahealth', native_enum=False, length=16), nullable=False),
    sa.Column('last_frame_at', sa.DateTime(), nullable=True),
    sa.Column('consecutive_failures', sa.Integer(), nullable=False),
    sa.Column('last_error', sa.String(length=1000), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['site_id'], ['sites.id'], name=op.f('fk_cameras_site_id_sites'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_cameras')),
    sa.UniqueConstraint('site_id', 'name', name=op.f('uq_cameras_site_id_name'))
    )
    with op.batch_alter_table('cameras', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_cameras_site_id'), ['site_id'], unique=False)
    op.create_table('stage_changes',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('site_id', sa.Integer(), nullable=False),
    sa.Column('from_stage', sa.Enum('manual', 'limited', 'expanded', name='stage', native_enum=False, length=16), nullable=True),
    sa.Column('to_stage', sa.Enum('manual', 'limited', 'expanded', name='stage', native_enum=False, length=16), nullable=False),
    sa.Column('actor', sa.String(length=100), nullable=False),
    sa.Column('reason', sa.String(length=2000), nullable=False),
    sa.Column('model_version_id', sa.Integer(), nullable=True),
    sa.Column('thresholds', sa.JSON(), nullable=False),
    sa.Column('evidence', sa.JSON(), nullable=False),
    sa.Column('changed_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['model_version_id'], ['model_versions.id'], name=op.f('fk_stage_changes_model_version_id_model_versions')),
    sa.ForeignKeyConstraint(['site_id'], ['sites.id'], name=op.f('fk_stage_changes_site_id_sites'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_stage_changes'))
    )
    with op.batch_alter_table('stage_changes', schema=None) as batch_op:
        batch_op.create_index('ix_stage_changes_site_id_changed_at', ['site_id', 'changed_at'], unique=False)
    op.create_table('frames',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('camera_id', sa.Integer(), nullable=False),
    sa.Column('captured_at', sa.DateTime(), nullable=False),
    sa.Column('path', sa.String(length=500), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('size_bytes', sa.Integer(), nullable=False),
    sa.Column('width', sa.Integer(), nullable=False),
    sa.Column('height', sa.Integer(), nullable=False),
    sa.Column('brightness', sa.Double(), nullable=True),
    sa.Column('contrast', sa.Double(), nullable=True),
    sa.Column('sharpness', sa.Double(), nullable=True),
    sa.Column('is_night', sa.Boolean(), nullable=True),
    sa.Column('change_score', sa.Double(), nullable=True),
    sa.Column('status', sa.Enum('pending', 'claimed', 'scored', 'failed', name='framestatus', native_enum=False, length=16), nullable=False),
    sa.Column('claim_token', sa.String(length=36), nullable=True),
    sa.Column('claimed_until', sa.DateTime(), nullable=True),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('last_error', sa.String(length=1000), nullable=True),
    sa.ForeignKeyConstraint(['camera_id'], ['cameras.id'], name=op.f('fk_frames_camera_id_cameras'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_frames')),
    sa.UniqueConstraint('camera_id', 'captured_at', name=op.f('uq_frames_camera_id_captured_at'))
    )
    with op.batch_alter_table('frames', schema=None) as batch_op:
        batch_op.create_index('ix_frames_captured_at', ['captured_at'], unique=False)
        batch_op.create_index('ix_frames_status_id', ['status', 'id'], unique=False)
    op.create_table('alerts',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('site_id', sa.Integer(), nullable=False),
    sa.Column('camera_id', sa.Integer(), nullable=False),
    sa.Column('frame_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('model_version_id', sa.Integer(), nullable=True),
    sa.Column('stage', sa.Enum('manual', 'limited', 'expanded', name='stage', native_enum=False, length=16), nullable=False),
    sa.Column('status', sa.Enum('pending', 'queued', 'sent', 'suppressed', 'dead', name='alertstatus', native_enum=False, length=16), nullable=False),
    sa.Column('idempotency_key', sa.String(length=64), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('next_attempt_at', sa.DateTime(), nullable=True),
    sa.Column('last_error', sa.String(length=1000), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('delivered_at', sa.DateTime(), nullable=True),
    sa.ForeignKeyConstraint(['camera_id'], ['cameras.id'], name=op.f('fk_alerts_camera_id_cameras'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['frame_id'], ['frames.id'], name=op.f('fk_alerts_frame_id_frames')),
    sa.ForeignKeyConstraint(['model_version_id'], ['model_versions.id'], name=op.f('fk_alerts_model_version_id_model_versions')),
    sa.ForeignKeyConstraint(['site_id'], ['sites.id'], name=op.f('fk_alerts_site_id_sites'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_alerts')),
    sa.UniqueConstraint('idempotency_key', name=op.f('uq_alerts_idempotency_key'))
    )
    with op.batch_alter_table('alerts', schema=None) as batch_op:
        batch_op.create_index('ix_alerts_site_id_created_at', ['site_id', 'created_at'], unique=False)
        batch_op.create_index('ix_alerts_status_next_attempt_at', ['status', 'next_attempt_at'], unique=False)
    op.create_table('decisions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('frame_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('reviewer_id', sa.Integer(), nullable=False),
    sa.Column('verdict', sa.Enum('confirm', 'dismiss', 'missed', name='verdict', native_enum=False, length=16), nullable=False),
    sa.Column('note', sa.String(length=2000), nullable=True),
    sa.Column('decided_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['frame_id'], ['frames.id'], name=op.f('fk_decisions_frame_id_frames'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['reviewer_id'], ['users.id'], name=op.f('fk_decisions_reviewer_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_decisions')),
    sa.UniqueConstraint('frame_id', 'reviewer_id', name=op.f('uq_decisions_frame_id_reviewer_id'))
    )
    with op.batch_alter_table('decisions', schema=None) as batch_op:
        batch_op.create_index('ix_decisions_decided_at', ['decided_at'], unique=False)
    op.create_table('predictions',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('frame_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('model_version_id', sa.Integer(), nullable=False),
    sa.Column('probabilities', sa.JSON(), nullable=False),
    sa.Column('positive_score', sa.Double(), nullable=False),
    sa.Column('flagged', sa.Boolean(), nullable=False),
    sa.Column('ood_score', sa.Double(), nullable=True),
    sa.Column('embedding', sa.LargeBinary(), nullable=True),
    sa.Column('scored_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['frame_id'], ['frames.id'], name=op.f('fk_predictions_frame_id_frames'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['model_version_id'], ['model_versions.id'], name=op.f('fk_predictions_model_version_id_model_versions')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_predictions')),
    sa.UniqueConstraint('frame_id', 'model_version_id', name=op.f('uq_predictions_frame_id_model_version_id'))
    )
    with op.batch_alter_table('predictions', schema=None) as batch_op:
        batch_op.create_index('ix_predictions_model_version_id_flagged', ['model_version_id', 'flagged'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('predictions', schema=None) as batch_op:
        batch_op.drop_index('ix_predictions_model_version_id_flagged')
    op.drop_table('predictions')
    with op.batch_alter_table('decisions', schema=None) as batch_op:
        batch_op.drop_index('ix_decisions_decided_at')
    op.drop_table('decisions')
    with op.batch_alter_table('alerts', schema=None) as batch_op:
        batch_op.drop_index('ix_alerts_status_next_attempt_at')
        batch_op.drop_index('ix_alerts_site_id_created_at')
    op.drop_table('alerts')
    with op.batch_alter_table('frames', schema=None) as batch_op:
        batch_op.drop_index('ix_frames_status_id')
        batch_op.drop_index('ix_frames_captured_at')
    op.drop_table('frames')
    with op.batch_alter_table('stage_changes', schema=None) as batch_op:
        batch_op.drop_index('ix_stage_changes_site_id_changed_at')
    op.drop_table('stage_changes')
    with op.batch_alter_table('cameras', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_cameras_site_id'))
    op.drop_table('cameras')
    op.drop_table('sites')
    op.drop_table('users')
    op.drop_table('model_versions')
