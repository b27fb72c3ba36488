"""inference worker: model out-of-domain reference, frame claimant

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21 14:41:08.813804
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0002'
down_revision: str | Sequence[str] | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('model_versions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('ood_reference', sa.LargeBinary(), nullable=True))
    with op.batch_alter_table('frames', schema=None) as batch_op:
        batch_op.add_column(sa.Column('claimed_by', sa.String(length=100), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('frames', schema=None) as batch_op:
        batch_op.drop_column('claimed_by')
    with op.batch_alter_table('model_versions', schema=None) as batch_op:
        batch_op.drop_column('ood_reference')

