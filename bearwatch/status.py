"""What `bearwatch status` reports: sites, stages, cameras and row counts."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session

from bearwatch.redact import redact_text, redact_url
from bearwatch.schema import (
    Camera,
    CameraHealth,
    Frame,
    FrameQueueEntry,
    FrameStatus,
    ModelVersion,
    Prediction,
    Site,
    Stage,
    utcnow,
)


@dataclass(frozen=True)
class CameraStatus:
    name: str
    source: str  # redacted
    interval_s: float
    enabled: bool
    health: CameraHealth
    last_frame_at: datetime | None
    last_error: str | None  # redacted


@dataclass(frozen=True)
class SiteStatus:
    name: str
    stage: Stage
    stage_since: datetime
    rollout_model: str | None
    cameras: tuple[CameraStatus, ...]


@dataclass(frozen=True)
class Counts:
    frames: int
    frames_by_status: dict[str, int]
    predictions: int
    flagged: int
    models: int


def site_statuses(session: Session) -> list[SiteStatus]:
    sites = session.scalars(sa.select(Site).order_by(Site.name)).all()
    cameras = session.scalars(sa.select(Camera).order_by(Camera.name)).all()
    models = dict(session.execute(sa.select(ModelVersion.id, ModelVersion.name)).all())
    return [
        SiteStatus(
            name=s.name, stage=s.stage, stage_since=s.stage_since,
            rollout_model=models.get(s.rollout_model_id) if s.rollout_model_id else None,
            cameras=tuple(
                # last_error again: a row written by an older version may hold what it failed to mask
                CameraStatus(c.name, redact_url(c.source), c.interval_s, c.enabled, c.health, c.last_frame_at,
                             redact_text(c.last_error) if c.last_error else None)
                for c in cameras if c.site_id == s.id
            ),
        )
        for s in sites
    ]


def counts(session: Session) -> Counts:
    by_status = dict(session.execute(sa.select(Frame.status, sa.func.count()).group_by(Frame.status)).all())
    # A frame is pending in frames until its result; its lease is in frame_queue.
    claimed = session.scalar(
        sa.select(sa.func.count()).where(FrameQueueEntry.claimed_until >= utcnow())
    ) or 0
    by_status[FrameStatus.CLAIMED] = by_status.get(FrameStatus.CLAIMED, 0) + claimed
    by_status[FrameStatus.PENDING] = by_status.get(FrameStatus.PENDING, 0) - claimed
    return Counts(
        frames=sum(by_status.values()),
        frames_by_status={s.value: by_status.get(s, 0) for s in FrameStatus},
        predictions=session.scalar(sa.select(sa.func.count()).select_from(Prediction)) or 0,
        flagged=session.scalar(sa.select(sa.func.count()).where(Prediction.flagged)) or 0,
        models=session.scalar(sa.select(sa.func.count()).select_from(ModelVersion)) or 0,
    )
