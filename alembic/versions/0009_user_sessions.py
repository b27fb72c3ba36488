"""users can be disabled and their sessions ended; failed logins live in the database

Adds users.disabled_at, users.session_epoch (bumped on a password change or
disable, so dashboard sessions opened before it end) and users.preferences (a user's
dashboard choices, kept across logins), and the login_failures table
that the login throttle keeps (it used to live in the dashboard process's cache, which
any websocket client could clear).

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-30 02:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0009'
down_revision: str | Sequence[str] | None = '0008'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('users') as batch:
        batch.add_column(sa.Column('disabled_at', sa.DateTime(), nullable=True))
        batch.add_column(sa.Column('session_epoch', sa.Integer(), server_default='0', nullable=False))
        batch.add_column(sa.Column('preferences', sa.JSON(), server_default='{}', nullable=False))
    op.create_table('login_failures',
    sa.Column('key', sa.String(length=400), nullable=False),
    sa.Column('failures', sa.Integer(), nullable=False),
    sa.Column('last_failed_at', sa.DateTime(), nullable=False),
    sa.Column('blocked_until', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('key', name=op.f('pk_login_failures'))
    )
    op.create_index('ix_login_failures_last_failed_at', 'login_failures', ['last_failed_at'])


def downgrade() -> None:
    op.drop_index('ix_login_failures_last_failed_at', table_name='login_failures')
    op.drop_table('login_failures')
    with op.batch_alter_table('users') as batch:
        batch.drop_column('preferences')
        batch.drop_column('session_epoch')
        batch.drop_column('disabled_at')
