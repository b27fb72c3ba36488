"""alert channels: e-mail and webhook formats: alert_channels.format

A webhook channel POSTs its alert in a format (bearwatch JSON, Slack, Home Assistant);
existing channels keep today's JSON. The new channel kind "email" needs no change: the
kind column is a plain string (no native enum, no CHECK).

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-30 06:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0011'
down_revision: str | Sequence[str] | None = '0010'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('alert_channels') as batch:
        batch.add_column(sa.Column(
            'format', sa.Enum('bearwatch', 'slack', 'homeassistant', name='webhookformat', native_enum=False, length=16),
            nullable=False, server_default='bearwatch',
        ))


def downgrade() -> None:
    with op.batch_alter_table('alert_channels') as batch:
        batch.drop_column('format')
