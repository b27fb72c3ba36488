"""A named read position over flagged predictions (a ``shadow_cursors`` row), so that a
shadow-loop job reads only the flags that are new instead of the whole history.

Prediction ids come from one sequence, but several inference workers commit concurrently,
so a flag with a lower id can become visible after one with a higher id. The position
therefore advances in two steps: a pass notes the highest flagged id as the *candidate*
(with the time), and a pass at least ``settle_s`` later, having handled every flag above
the position it can see, makes the candidate the position. A transaction that drew an id
at or below the candidate was open when the candidate was read, so it has ended by then,
as long as no transaction writing predictions lasts ``settle_s`` (inference commits a
batch in one short transaction). A flag that commits later than that is not read by the
job; a ranger's verdict on its frame still handles it (shadow.verdicts).

Rows above the position are read again on every pass until it settles past them, so the
job skips what it already handled by its own marker (shadow.alerts: an anti-join with
``alert_flags``); what a pass reads is bounded by the flags of the last ``settle_s`` or so,
not by the history.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session

from bearwatch.db import upsert_insert
from bearwatch.schema import Prediction, ShadowCursor

SETTLE_S = 120.0


def flagged_after(position: int) -> sa.ColumnElement[bool]:
    """SQL: the flagged predictions above ``position``, in the form both databases read
    through the partial index ``ix_predictions_flagged_id``: SQLite uses a partial index
    only when the query states its condition (``flagged = 1``; ``IS 1`` does not match)."""
    return sa.and_(Prediction.flagged == sa.true(), Prediction.id > position)


def open_cursor(session: Session, name: str, now: datetime) -> ShadowCursor:
    """The named cursor, locked until the transaction ends (PostgreSQL; SQLite's write
    transaction already is); made at position 0 on first use."""
    query = sa.select(ShadowCursor).where(ShadowCursor.name == name).with_for_update()
    cursor = session.scalar(query)
    if cursor is None:
        session.execute(upsert_insert(session, ShadowCursor).values(name=name, position=0, updated_at=now)
                        .on_conflict_do_nothing())
        cursor = session.scalars(query).one()
    return cursor


def highest_flagged(session: Session, position: int) -> int | None:
    """The highest flagged prediction id above ``position`` (one step down the index)."""
    return session.scalar(
        sa.select(Prediction.id).where(flagged_after(position)).order_by(Prediction.id.desc()).limit(1)
    )


def advance(
    session: Session, cursor: ShadowCursor, now: datetime, *, settle_s: float = SETTLE_S,
    unhandled_from: int | None = None,
) -> None:
    """Move the cursor on, once the caller has handled every flag above its position that
    this transaction sees, except those from ``unhandled_from`` on (left for a later pass):
    a settled candidate becomes the position (never at or past ``unhandled_from``), and the
    highest flagged id now becomes the next candidate."""
    candidate, taken_at, position = cursor.candidate, cursor.candidate_at, cursor.position
    settled = candidate is not None and taken_at is not None and now - taken_at >= timedelta(seconds=settle_s)
    if settled and candidate is not None:
        position = max(position, candidate if unhandled_from is None else min(candidate, unhandled_from - 1))
    if candidate is not None and not (settled and position >= candidate):
        if position != cursor.position:  # the candidate is not reached yet
            cursor.position, cursor.updated_at = position, now
        return
    highest = highest_flagged(session, position)
    if highest is None and candidate is None:
        return  # nothing new: no write
    # Set together after the read: one UPDATE.
    cursor.position, cursor.candidate, cursor.candidate_at = position, highest, (now if highest is not None else None)
    cursor.updated_at = now
