"""review_queue_scale: the review queue's reads stop growing with the window (issue 13)

Three partial indexes for shadow.review_queue on PostgreSQL (made on SQLite too, which
does not read them yet):
- ix_frames_audit_captured_at: frames whose id hash (shadow.alert_rules.audit_hash) is
  below the audit threshold of bearwatch.schema.AUDIT_INDEX_RATE (0.10), by capture time:
  the audit sample of every site whose stratum rates are at most that rate is read from
  it (a tenth of the frames) instead of from every frame of the window;
- ix_predictions_flagged_scored_at: flagged predictions by scoring time: the newest flags
  are read from it, a page's worth, instead of every flag of the window;
- ix_predictions_audit_frame_id: the unflagged predictions of the frames of the first
  index, with their score (PostgreSQL: INCLUDE, as is the first index's id, camera and
  night flag), so that counting the audit sample reads these two small indexes only.

Revision ID: 0016
Revises: 0015
Create Date: 2026-11-30 12:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0016'
down_revision: str | Sequence[str] | None = '0015'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# bearwatch.schema.AUDIT_INDEX_PREDICATE and AUDIT_PREDICTION_PREDICATE when this revision was written
AUDIT_PREDICATE = '(id * 2654435761) % 4294967296 < 429496730'
AUDIT_PREDICTION_HASH = '(frame_id * 2654435761) % 4294967296 < 429496730'


def upgrade() -> None:
    op.create_index(
        'ix_frames_audit_captured_at', 'frames', ['captured_at'], unique=False,
        sqlite_where=sa.text(AUDIT_PREDICATE), postgresql_where=sa.text(AUDIT_PREDICATE),
        postgresql_include=['id', 'camera_id', 'is_night'],
    )
    op.create_index(
        'ix_predictions_flagged_scored_at', 'predictions', ['scored_at'], unique=False,
        sqlite_where=sa.text('flagged = 1'), postgresql_where=sa.text('flagged'),
    )
    op.create_index(
        'ix_predictions_audit_frame_id', 'predictions', ['frame_id', 'model_version_id'], unique=False,
        sqlite_where=sa.text(f'flagged = 0 AND {AUDIT_PREDICTION_HASH}'),
        postgresql_where=sa.text(f'NOT flagged AND {AUDIT_PREDICTION_HASH}'), postgresql_include=['positive_score', 'id'],
    )


def downgrade() -> None:
    op.drop_index('ix_predictions_audit_frame_id', table_name='predictions')
    op.drop_index('ix_predictions_flagged_scored_at', table_name='predictions')
    op.drop_index('ix_frames_audit_captured_at', table_name='frames')
