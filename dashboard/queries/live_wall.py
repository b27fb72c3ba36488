"""The live wall: the newest frame of every camera of one site, with the rollout
model's score on it (the screen a ranger watches in the manual stage)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session

from bearwatch.errors import NotFound
from bearwatch.schema import Camera, CameraHealth, Frame, ModelVersion, Prediction, Site, Stage
from dashboard.queries.cameras import CameraState, camera_state


@dataclass(frozen=True)
class WallTile:
    camera_id: int
    camera: str
    state: CameraState
    health: CameraHealth
    frame_id: int | None
    captured_at: datetime | None
    age_s: float | None
    path: str | None  # relative to the frame store root
    scored: bool
    positive_score: float | None
    flagged: bool


@dataclass(frozen=True)
class LiveWall:
    site: str
    stage: Stage
    rollout_model: str | None  # None: scores of any model are shown
    tiles: tuple[WallTile, ...]


def live_wall(session: Session, site: str, *, now: datetime) -> LiveWall:
    row = session.execute(
        sa.select(Site.id, Site.stage, Site.rollout_model_id, ModelVersion.name)
        .outerjoin(ModelVersion, ModelVersion.id == Site.rollout_model_id)
        .where(Site.name == site)
    ).one_or_none()
    if row is None:
        raise NotFound(f"no site named {site!r}")
    site_id, stage, rollout_id, rollout_name = row
    # The newest frame per camera: max(captured_at) per camera is one seek on the
    # (camera_id, captured_at) unique index, then the frame is joined on that key.
    newest = (
        sa.select(sa.func.max(Frame.captured_at)).where(Frame.camera_id == Camera.id).correlate(Camera).scalar_subquery()
    )
    cameras = session.execute(
        sa.select(Camera.id, Camera.name, Camera.enabled, Camera.health, Camera.interval_s,
                  Frame.id, Frame.captured_at, Frame.path)
        .outerjoin(Frame, sa.and_(Frame.camera_id == Camera.id, Frame.captured_at == newest))
        .where(Camera.site_id == site_id)
        .order_by(Camera.name)
    ).all()
    frame_ids = [c[5] for c in cameras if c[5] is not None]
    scores: dict[int, tuple[float, bool]] = {}
    if frame_ids:
        query = (
            sa.select(Prediction.frame_id, sa.func.max(Prediction.positive_score),
                      sa.func.max(sa.cast(Prediction.flagged, sa.Integer)))
            .where(Prediction.frame_id.in_(frame_ids))
            .group_by(Prediction.frame_id)
        )
        if rollout_id is not None:
            query = query.where(Prediction.model_version_id == rollout_id)
        scores = {fid: (score, bool(flag)) for fid, score, flag in session.execute(query)}
    tiles = []
    for cam_id, name, enabled, health, interval_s, frame_id, captured_at, path in cameras:
        score = scores.get(frame_id) if frame_id is not None else None
        tiles.append(WallTile(
            camera_id=cam_id, camera=name, health=health,
            state=camera_state(enabled=enabled, health=health, last_frame_at=captured_at, interval_s=interval_s, now=now),
            frame_id=frame_id, captured_at=captured_at,
            age_s=(now - captured_at).total_seconds() if captured_at else None, path=path,
            scored=score is not None, positive_score=score[0] if score else None, flagged=bool(score and score[1]),
        ))
    return LiveWall(site=site, stage=stage, rollout_model=rollout_name, tiles=tuple(tiles))
