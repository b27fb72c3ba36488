"""Time buckets in SQL, the same text on both databases: 'YYYY-MM-DD' for a day
(timestamps are stored as naive UTC, see schema.UTCDateTime)."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session


def day_bucket(session: Session, column: Any) -> sa.ColumnElement[str]:
    if session.get_bind().dialect.name == "postgresql":
        return sa.func.to_char(column, "YYYY-MM-DD")
    # SQLite keeps DateTime as 'YYYY-MM-DD HH:MM:SS.ffffff' text.
    return sa.func.substr(column, 1, 10)
