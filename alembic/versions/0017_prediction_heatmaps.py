"""prediction_heatmaps: where the model looked in a frame it flagged (issue 16 item 3)

The inference worker computes a class-activation map (Grad-CAM on the last feature map of
the learner's body) for every prediction it flags and stores it as a small uint8 grid;
the dashboard's Review page overlays it on the frame without loading a model. A heat map
goes with its prediction (ON DELETE CASCADE), so frame retention removes it too.

Revision ID: 0017
Revises: 0016
Create Date: 2026-11-30 12:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0017'
down_revision: str | Sequence[str] | None = '0016'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'prediction_heatmaps',
        sa.Column('prediction_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False,
                  autoincrement=False),
        sa.Column('method', sa.String(length=16), nullable=False),
        sa.Column('grid_rows', sa.Integer(), nullable=False),
        sa.Column('grid_cols', sa.Integer(), nullable=False),
        sa.Column('cells', sa.LargeBinary(), nullable=False),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(['prediction_id'], ['predictions.id'],
                                name=op.f('fk_prediction_heatmaps_prediction_id_predictions'), ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('prediction_id', name=op.f('pk_prediction_heatmaps')),
    )


def downgrade() -> None:
    op.drop_table('prediction_heatmaps')
