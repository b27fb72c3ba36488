"""Second looks in SQL: which decided frames need another ranger (shadow.truth.
needs_another_look, the same rule), read from the per-frame vote summary frame_votes
(bearwatch.schema.FrameVotes, kept by the triggers of migration 0018) instead of from
every verdict.

A frame needs another look when its one verdict is against the site's rollout model's
flag, or its two verdicts disagree. The summary's partial index holds the frames that may
(``MAY_NEED_A_LOOK``: the same rule over the flag the summary last saw, or an unknown
flag); the queue then decides with the rollout prediction it joins (``needs_another_look_sql``),
so it reads those few frames and never the settled ones.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
import sqlalchemy.orm

from bearwatch.schema import FrameVotes

# The frames that may need another look (the same rule over the flag the summary last saw,
# or an unknown flag), stated as the partial index ix_frame_votes_look_captured_at states it.
MAY_NEED_A_LOOK: sa.ColumnElement[bool] = FrameVotes.may_need_look == sa.true()


# A column of a mapped class, or any SQL expression.
_Int = sa.ColumnElement[int] | sa.orm.InstrumentedAttribute[int]
_Bool = sa.ColumnElement[bool] | sa.orm.InstrumentedAttribute[bool] | sa.orm.InstrumentedAttribute[bool | None]


def needs_another_look_sql(votes: _Int, bears: _Int, flagged: _Bool) -> sa.ColumnElement[bool]:
    """SQL: shadow.truth.needs_another_look of a frame with ``votes`` verdicts, ``bears``
    of them saying bear, that the rollout model ``flagged`` (or not)."""
    return sa.or_(
        sa.and_(votes == 1, flagged.is_(True), bears == 0),
        sa.and_(votes == 1, flagged.is_(False), bears == 1),
        sa.and_(votes == 2, bears == 1),
    )


def second_look_frames(since: datetime, flagged: _Bool) -> tuple[sa.ColumnElement[bool], ...]:
    """SQL conditions on frame_votes (joined to the frame's rollout prediction, whose flag is
    ``flagged``): the frames captured since ``since`` that need another look, read through
    the summary's partial index."""
    return (MAY_NEED_A_LOOK, FrameVotes.captured_at >= since,
            needs_another_look_sql(FrameVotes.votes, FrameVotes.bears, flagged))
