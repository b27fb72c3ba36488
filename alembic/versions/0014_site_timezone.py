"""sites.timezone: each site's clock for pages, CLI lines and alerts

Times are stored in UTC as before; people read them in the site's time zone (IANA name,
from the park file's ``timezone``). Existing sites keep UTC until the park file names one.

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-30 09:10:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0014'
down_revision: str | Sequence[str] | None = '0013'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('sites') as batch:
        batch.add_column(sa.Column('timezone', sa.String(length=64), server_default='UTC', nullable=False))


def downgrade() -> None:
    with op.batch_alter_table('sites') as batch:
        batch.drop_column('timezone')
