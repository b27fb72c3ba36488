"""flag processing from a cursor: shadow_cursors, a partial index on flagged predictions

The flag processor read every flagged prediction of the whole history on each pass (an
anti-join with alert_flags); it now reads from a stored position (shadow_cursors) through
a partial index holding only flagged predictions (about 1% of rows).

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-30 09:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0012'
down_revision: str | Sequence[str] | None = '0011'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'shadow_cursors',
        sa.Column('name', sa.String(length=50), nullable=False),
        sa.Column('position', sa.BigInteger(), nullable=False),
        sa.Column('candidate', sa.BigInteger(), nullable=True),
        sa.Column('candidate_at', sa.DateTime(), nullable=True),
        sa.Column('updated_at', sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint('name', name=op.f('pk_shadow_cursors')),
    )
    op.create_index(
        'ix_predictions_flagged_id', 'predictions', ['id'], unique=False,
        sqlite_where=sa.text('flagged = 1'), postgresql_where=sa.text('flagged'),
    )


def downgrade() -> None:
    op.drop_index('ix_predictions_flagged_id', table_name='predictions')
    op.drop_table('shadow_cursors')
