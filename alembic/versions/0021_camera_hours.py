"""camera_hours: each camera's closed clock hours with usable frames, kept

The guard (every minute per promoted site) and the gates count a site's camera-hours of
its manual baseline and of the period since promotion from the frames. A process read the
baseline's frames once (12.9 s at the season bench's 10M frames, again after every
restart), and frame retention took the baseline's hours away with its frames, while the
baseline's bear frames stay as evidence: the baseline's rate rose and the guard saw the
alert rate fall. The shadow loop now rolls each closed hour up into this table
(shadow.camera_hours), and the exposures read closed hours from it.

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-01 14:10:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0021'
down_revision: str | Sequence[str] | None = '0020'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'camera_hours',
        sa.Column('camera_id', sa.Integer(), nullable=False),
        sa.Column('hour', sa.DateTime(), nullable=False),
        sa.Column('frames', sa.Integer(), nullable=False),
        sa.Column('night_frames', sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(['camera_id'], ['cameras.id'], name=op.f('fk_camera_hours_camera_id_cameras'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('camera_id', 'hour', name=op.f('pk_camera_hours')),
    )


def downgrade() -> None:
    op.drop_table('camera_hours')
    op.execute("DELETE FROM shadow_cursors WHERE name = 'camera_hours'")
