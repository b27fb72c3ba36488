"""Plain query functions behind the dashboard pages (testable without a browser)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from bearwatch.schema import Camera, Frame, ModelVersion, Prediction, Site


@dataclass(frozen=True)
class ScoredFrame:
    frame_id: int
    site: str
    camera: str
    captured_at: datetime
    path: str  # relative to the frame store root
    model: str
    label: str  # the most probable class
    positive_score: float
    flagged: bool


def _scored_query(limit: int) -> sa.Select[Any]:
    return (
        sa.select(
            Frame.id, Site.name, Camera.name, Frame.captured_at, Frame.path, ModelVersion.name,
            Prediction.probabilities, Prediction.positive_score, Prediction.flagged,
        )
        .join(Prediction, Prediction.frame_id == Frame.id)
        .join(ModelVersion, ModelVersion.id == Prediction.model_version_id)
        .join(Camera, Camera.id == Frame.camera_id)
        .join(Site, Site.id == Camera.site_id)
        .order_by(Frame.captured_at.desc(), Frame.id.desc())
        .limit(limit)
    )


def latest_scored_frames(
    session: Session, limit: int = 24, site: str | None = None, camera_id: int | None = None
) -> list[ScoredFrame]:
    """The newest scored frames with each model's prediction, newest first: of every camera,
    of one site's, or of one camera."""
    if camera_id is not None:
        rows = list(session.execute(_scored_query(limit).where(Frame.camera_id == camera_id)))
    elif site is None:
        rows = list(session.execute(_scored_query(limit)))  # walks the captured_at index from the end
    else:
        # One site: the newest rows of each of its cameras from the (camera_id, captured_at)
        # index, merged here. A single query filtered by site makes the planners sort every
        # frame of the site instead.
        camera_ids = session.scalars(sa.select(Camera.id).join(Site).where(Site.name == site)).all()
        rows = [r for cam in camera_ids for r in session.execute(_scored_query(limit).where(Frame.camera_id == cam))]
        rows = sorted(rows, key=lambda r: (r[3], r[0]), reverse=True)[:limit]
    return [
        ScoredFrame(
            frame_id=r[0], site=r[1], camera=r[2], captured_at=r[3], path=r[4], model=r[5],
            label=max(r[6], key=r[6].get), positive_score=r[7], flagged=r[8],
        )
        for r in rows
    ]


def site_names(session: Session) -> list[str]:
    return list(session.scalars(sa.select(Site.name).order_by(Site.name)))
