"""Embeddings kept for a window, then thinned to what drift can sample (issue 13 item 4).

An embedding (512 float16, 1 KB) is 70% of a prediction's bytes, and only drift reads
them: the MMD compares a sample of at most ``drift_windows.SAMPLE_EMBEDDINGS`` per
window, the first scored frames in the order of the seeded hash ``sample_rank``. So past
``days`` (the current drift window and its margin) a prediction keeps its embedding only
when its frame's rank falls in the lowest ``keep_fraction`` of the hash range; the others
are set to NULL. Because the sample is the *first* frames in that same order, a window of
n scored frames samples exactly what it sampled before thinning as long as its quota of
embeddings lies below the threshold (about n * keep_fraction >= its quota: at the default
2%, windows of 15,000 scored frames or more, a 2-camera site's day); a smaller window
samples the kept ones, fewer, still uniform (the rank does not depend on the image).

Each pass walks predictions by id from a ``shadow_cursors`` position, a batch at a time,
up to the first prediction whose frame is younger than the cutoff: the work per pass
follows what inference scored since the last pass, not the history. A prediction that
commits with an id below the position after the cursor passed it keeps its embedding
(bytes, never a wrong answer).

On PostgreSQL the thinned row is rewritten (a dead tuple per prediction, reclaimed by
autovacuum and reused by new rows: the table stops growing by embeddings, it does not
shrink); ``docs/benchmarks.md`` gives bytes per camera-day.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import QueryableAttribute, Session, sessionmaker

from bearwatch.db import write_transaction
from bearwatch.schema import Camera, Frame, Prediction
from shadow.drift_sampling import RANK_RANGE, sample_rank, sample_seed_sql
from shadow.flag_cursor import open_cursor

CURSOR = "embedding_thinning"
KEEP_FRACTION = 0.02
BATCH = 5000
MIN_DAYS = 2.0  # drift's current window is the last 24 h: its embeddings are all kept

_Column = sa.ColumnElement[int] | QueryableAttribute[int]


@dataclass(frozen=True)
class ThinReport:
    thinned: int  # embeddings set to NULL
    seen: int  # predictions the cursor passed
    position: int  # the cursor's prediction id after the pass


def keep_threshold(keep_fraction: float) -> int:
    """The rank below which a frame keeps its embedding."""
    return round(keep_fraction * RANK_RANGE)


def thinned_out(frame_id: _Column, site_id: _Column, keep_fraction: float) -> sa.ColumnElement[bool]:
    """SQL: a frame of that site whose rank is past the kept fraction (its embedding goes)."""
    return sample_rank(frame_id, sample_seed_sql(site_id)) >= keep_threshold(keep_fraction)


def thin_embeddings(
    factory: sessionmaker[Session], *, days: float, now: datetime, keep_fraction: float = KEEP_FRACTION,
    batch: int = BATCH,
) -> ThinReport:
    """One pass: thin the embeddings of predictions of frames captured more than ``days``
    ago, batch by batch, each batch in its own write transaction."""
    if days < MIN_DAYS:
        raise ValueError(f"embeddings are kept at least {MIN_DAYS:g} days (drift's current window is the last 24 h)")
    if not 0 <= keep_fraction <= 1:
        raise ValueError("keep_fraction is a share between 0 and 1")
    cutoff = now - timedelta(days=days)
    thinned = seen = 0
    while True:
        with write_transaction(factory) as session:
            cursor = open_cursor(session, CURSOR, now)
            passed, last, count, finished = _thin_batch(session, cursor.position, cutoff, keep_fraction, batch)
            if passed:
                cursor.position, cursor.updated_at = last, now
            position = cursor.position
        thinned += count
        seen += passed
        if finished:
            return ThinReport(thinned, seen, position)


def _thin_batch(
    session: Session, position: int, cutoff: datetime, keep_fraction: float, batch: int,
) -> tuple[int, int, int, bool]:
    """Thin the next ``batch`` predictions after ``position`` up to the first whose frame
    is younger than ``cutoff``: (predictions passed, the last one's id, embeddings thinned,
    whether the pass is done: fewer than a batch left, or a young frame reached)."""
    rows = session.execute(
        sa.select(Prediction.id, Frame.captured_at < cutoff)
        .join(Frame, Frame.id == Prediction.frame_id)
        .where(Prediction.id > position)
        .order_by(Prediction.id)
        .limit(batch)
    ).all()
    old = 0
    while old < len(rows) and rows[old][1]:
        old += 1
    if old == 0:
        return 0, position, 0, True
    last = rows[old - 1][0]
    of_frame = (
        sa.select(Frame.id)
        .join(Camera, Camera.id == Frame.camera_id)
        .where(Frame.id == Prediction.frame_id, thinned_out(Frame.id, Camera.site_id, keep_fraction))
    )
    result: sa.CursorResult[Any] = session.execute(  # type: ignore[assignment]  # an UPDATE's result is a CursorResult
        sa.update(Prediction)
        .where(Prediction.id > position, Prediction.id <= last, Prediction.embedding.is_not(None), of_frame.exists())
        .values(embedding=None)
        .execution_options(synchronize_session=False)
    )
    # a young frame stops the walk: the pass ends there, even after a full batch
    return old, last, result.rowcount, old < batch
