"""The Review page's context for one frame: the camera's neighbouring frames (a bear is
easier to see moving), the camera's bear score around it, and where the model looked
(the heat map the inference worker stored for a flagged frame: inference.heatmap).

Scores and heat maps are the site's rollout model's, the model whose flag the ranger
judges. Every read is bounded: the neighbours and the score history walk the
(camera_id, captured_at) index from the frame's time and stop after a fixed number of
rows; a frame's context is five statements whatever the size of the tables.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from bearwatch.schema import Camera, Frame, ModelVersion, Prediction, PredictionHeatmap, Site

NEIGHBOURS = 3  # frames before and after the frame in the strip
HISTORY = timedelta(hours=1)
HISTORY_AFTER = timedelta(minutes=10)  # the chart runs at least this long past the frame
MAX_HISTORY_POINTS = 1500  # a camera sampled every 2.4 s still fits its hour


@dataclass(frozen=True)
class ContextFrame:
    frame_id: int
    captured_at: datetime
    path: str  # relative to the frame store root
    score: float | None  # the rollout model's bear score; None: not scored (yet)
    flagged: bool
    current: bool  # the frame under review


@dataclass(frozen=True)
class ScorePoint:
    captured_at: datetime
    score: float
    flagged: bool


@dataclass(frozen=True)
class FrameHeatmap:
    method: str
    grid_rows: int
    grid_cols: int
    cells: bytes  # uint8, row-major, 255 the strongest


@dataclass(frozen=True)
class FrameContext:
    frame_id: int
    camera_id: int
    site: str
    captured_at: datetime
    model: str | None  # the site's rollout model
    threshold: float | None  # its flag threshold
    neighbours: tuple[ContextFrame, ...]  # oldest first, the frame itself included
    history_from: datetime
    history_to: datetime
    history: tuple[ScorePoint, ...]  # oldest first
    history_truncated: bool  # more frames in the window than MAX_HISTORY_POINTS: the newest are shown
    heatmap: FrameHeatmap | None


def _with_score(model_id: int | None, *columns: Any) -> sa.Select[Any]:
    """Frames with the rollout model's prediction, if any (outer join on the unique
    (frame_id, model_version_id) index)."""
    return sa.select(Frame.id, Frame.captured_at, Frame.path, Prediction.positive_score, Prediction.flagged, *columns).outerjoin(
        Prediction, sa.and_(Prediction.frame_id == Frame.id, Prediction.model_version_id == model_id)
    )


def neighbour_frames(session: Session, camera_id: int, captured_at: datetime, model_id: int | None,
                     k: int = NEIGHBOURS) -> list[ContextFrame]:
    """Up to ``k`` frames of the camera before the moment and ``k`` after, with it, oldest first."""
    base = _with_score(model_id).where(Frame.camera_id == camera_id)
    before = session.execute(base.where(Frame.captured_at < captured_at).order_by(Frame.captured_at.desc()).limit(k)).all()
    here_and_after = session.execute(
        base.where(Frame.captured_at >= captured_at).order_by(Frame.captured_at).limit(k + 1)
    ).all()
    rows = [*reversed(before), *here_and_after]
    return [ContextFrame(r[0], r[1], r[2], r[3], bool(r[4]), r[1] == captured_at) for r in rows]


def score_history(session: Session, camera_id: int, model_id: int, since: datetime, until: datetime,
                  limit: int = MAX_HISTORY_POINTS) -> tuple[list[ScorePoint], bool]:
    """The camera's scored frames in [since, until] (the newest ``limit``), oldest first,
    and whether some were left out."""
    rows = session.execute(
        sa.select(Frame.captured_at, Prediction.positive_score, Prediction.flagged)
        .join(Prediction, sa.and_(Prediction.frame_id == Frame.id, Prediction.model_version_id == model_id))
        .where(Frame.camera_id == camera_id, Frame.captured_at >= since, Frame.captured_at <= until)
        .order_by(Frame.captured_at.desc())
        .limit(limit + 1)
    ).all()
    truncated = len(rows) > limit
    return [ScorePoint(r[0], float(r[1]), bool(r[2])) for r in reversed(rows[:limit])], truncated


def prediction_heatmap(session: Session, frame_id: int, model_id: int) -> FrameHeatmap | None:
    row = session.execute(
        sa.select(PredictionHeatmap.method, PredictionHeatmap.grid_rows, PredictionHeatmap.grid_cols, PredictionHeatmap.cells)
        .join(Prediction, Prediction.id == PredictionHeatmap.prediction_id)
        .where(Prediction.frame_id == frame_id, Prediction.model_version_id == model_id)
    ).first()
    return FrameHeatmap(row[0], int(row[1]), int(row[2]), bytes(row[3])) if row else None


def frame_context(session: Session, frame_id: int, now: datetime, k: int = NEIGHBOURS) -> FrameContext | None:
    """What the Review page shows around ``frame_id``; None when the frame is gone. The score
    history is the last hour up to now, or, for a frame too old to sit well inside it, the
    hour up to ``HISTORY_AFTER`` past the frame: the frame is always on the chart."""
    head = session.execute(
        sa.select(Frame.camera_id, Frame.captured_at, Site.name, ModelVersion.id, ModelVersion.name, ModelVersion.threshold)
        .join(Camera, Camera.id == Frame.camera_id)
        .join(Site, Site.id == Camera.site_id)
        .outerjoin(ModelVersion, ModelVersion.id == Site.rollout_model_id)
        .where(Frame.id == frame_id)
    ).first()
    if head is None:
        return None
    camera_id, captured_at, site, model_id, model, threshold = head
    if captured_at > now:  # a camera clock ahead of ours
        until = captured_at
    elif now - captured_at <= HISTORY - HISTORY_AFTER:
        until = now
    else:
        until = captured_at + HISTORY_AFTER
    since = until - HISTORY
    history: list[ScorePoint] = []
    truncated = False
    heatmap = None
    if model_id is not None:
        history, truncated = score_history(session, camera_id, model_id, since, until)
        heatmap = prediction_heatmap(session, frame_id, model_id)
    return FrameContext(
        frame_id=frame_id, camera_id=camera_id, site=site, captured_at=captured_at, model=model,
        threshold=float(threshold) if threshold is not None else None,
        neighbours=tuple(neighbour_frames(session, camera_id, captured_at, model_id, k)),
        history_from=since, history_to=until, history=tuple(history), history_truncated=truncated, heatmap=heatmap,
    )
