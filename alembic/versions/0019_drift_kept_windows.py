"""drift_kept_windows: drift's closed windows and hours kept in the database (issue 13)

Drift kept the closed reference windows and the closed clock hours of the current window
in memory only (shadow.drift_windows), so every new shadow process read them again from
the frames: at 10M frames in the season bench the first pass read 12.0M rows, twice the
passes after it. This table holds them (counts and sample as numpy arrays in a blob, with
a format version), keyed by a digest of what their read depends on; a new process reads
them back in one statement. The drift pass writes the new ones and deletes those no
window needs any more.

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-01 10:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0019'
down_revision: str | Sequence[str] | None = '0018'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'drift_kept_windows',
        sa.Column('key', sa.String(length=64), nullable=False),
        sa.Column('kind', sa.String(length=8), nullable=False),
        sa.Column('site_id', sa.Integer(), nullable=False),
        sa.Column('model_version_id', sa.Integer(), nullable=True),
        sa.Column('window_start', sa.DateTime(), nullable=False),
        sa.Column('window_end', sa.DateTime(), nullable=False),
        sa.Column('format', sa.Integer(), nullable=False),
        sa.Column('payload', sa.LargeBinary(), nullable=False),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(['site_id'], ['sites.id'], name=op.f('fk_drift_kept_windows_site_id_sites'),
                                ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['model_version_id'], ['model_versions.id'],
                                name=op.f('fk_drift_kept_windows_model_version_id_model_versions'), ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('key', name=op.f('pk_drift_kept_windows')),
    )
    op.create_index('ix_drift_kept_windows_window_end', 'drift_kept_windows', ['window_end'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_drift_kept_windows_window_end', table_name='drift_kept_windows')
    op.drop_table('drift_kept_windows')
