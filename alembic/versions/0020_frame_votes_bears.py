"""frame_votes: an index of the frames rangers said bear on, by camera and capture time

The guard (every minute per promoted site) and the gates read a site's baseline bear
frames of its manual period: every frame of that period was read by (camera_id,
captured_at) and joined to its verdicts, to keep the few that rangers said bear on
(8.4M frames a pass at the season bench's 10M: 26 s a pass). The bear frames are read
from frame_votes through this partial index now: only frames with a bear vote.

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-01 10:50:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0020'
down_revision: str | Sequence[str] | None = '0019'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index('ix_frame_votes_bears_camera_id_captured_at', 'frame_votes', ['camera_id', 'captured_at'],
                    unique=False, sqlite_where=sa.text('bears > 0'), postgresql_where=sa.text('bears > 0'))


def downgrade() -> None:
    op.drop_index('ix_frame_votes_bears_camera_id_captured_at', table_name='frame_votes')
