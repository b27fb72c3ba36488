"""held alerts escalate: alerts.escalated_at

A held alert (limited stage) that no ranger decided within the site's
held_escalation_s goes to the alert channels unverified; the time it did is kept on
the alert.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-30 03:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0010'
down_revision: str | Sequence[str] | None = '0009'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('alerts') as batch:
        batch.add_column(sa.Column('escalated_at', sa.DateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('alerts') as batch:
        batch.drop_column('escalated_at')
