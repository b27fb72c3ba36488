"""Serialising the writers of alerts (the flag processor, verdicts, undo).

On SQLite every such writer runs in ``bearwatch.db.write_transaction`` (BEGIN IMMEDIATE),
which already serialises them. On PostgreSQL they take one transaction-level advisory
lock: verdicts are few, and one order of writers keeps the cooldown merge and the
flag -> alert link consistent without per-row races.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.orm import Session

ALERTS_LOCK_KEY = 0x62_77_61_6C  # "bwal"
SHADOW_LEADER_KEY = 0x62_77_73_68  # "bwsh": the shadow loop's session-level leader lock


def lock_alerts(session: Session) -> None:
    """Hold the alerts lock until this transaction ends (PostgreSQL; no-op on SQLite)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": ALERTS_LOCK_KEY})
