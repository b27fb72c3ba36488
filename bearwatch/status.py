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
    CameraHealthEvent,
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
    # How ingest samples it, when that changed: its newest health event that changes no
    # state, e.g. "persistent reader: opening took 2.4 s at a 2 s interval" (ingest.sampler).
    sampling: str | None = None


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
    # True when frames and predictions are the planner's estimates (PostgreSQL, tables
    # over EXACT_COUNT_LIMIT rows); the queue, flagged and models counts stay exact.
    approximate: bool = False


# Past this many rows a PostgreSQL count(*) reads the whole table (seconds at a season's
# 10M frames), so `status` shows the planner's estimate, kept current by autovacuum/ANALYZE.
EXACT_COUNT_LIMIT = 1_000_000


def site_statuses(session: Session) -> list[SiteStatus]:
    sites = session.scalars(sa.select(Site).order_by(Site.name)).all()
    cameras = session.scalars(sa.select(Camera).order_by(Camera.name)).all()
    models = dict(session.execute(sa.select(ModelVersion.id, ModelVersion.name)).all())
    newest_note = (
        sa.select(sa.func.max(CameraHealthEvent.id))
        .where(CameraHealthEvent.from_health == CameraHealthEvent.to_health)
        .group_by(CameraHealthEvent.camera_id)
    )
    sampling = dict(session.execute(
        sa.select(CameraHealthEvent.camera_id, CameraHealthEvent.reason).where(CameraHealthEvent.id.in_(newest_note))
    ).all())
    return [
        SiteStatus(
            name=s.name, stage=s.stage, stage_since=s.stage_since,
            rollout_model=models.get(s.rollout_model_id) if s.rollout_model_id else None,
            cameras=tuple(
                # last_error again: a row written by an older version may hold what it failed to mask
                CameraStatus(c.name, redact_url(c.source), c.interval_s, c.enabled, c.health, c.last_frame_at,
                             redact_text(c.last_error) if c.last_error else None, sampling.get(c.id))
                for c in cameras if c.site_id == s.id
            ),
        )
        for s in sites
    ]


def _estimated_rows(session: Session, table: str) -> int | None:
    """PostgreSQL's estimate of a table's rows; None elsewhere or before its first ANALYZE."""
    if session.get_bind().dialect.name != "postgresql":
        return None
    rows = session.scalar(sa.text(  # a plain table's, or a partitioned one's partitions' (bearwatch.partitions)
        "SELECT sum(reltuples)::bigint FROM pg_class WHERE relkind = 'r' AND reltuples >= 0 AND oid IN "
        "(SELECT relid FROM pg_partition_tree(to_regclass(:t)) UNION SELECT to_regclass(:t))"), {"t": table})
    return rows if rows is not None and rows >= 0 else None


def _rows(session: Session, table: type[Frame] | type[Prediction], exact_limit: int) -> tuple[int, bool]:
    """(rows, approximate): the estimate for a big PostgreSQL table, else an exact count."""
    estimate = _estimated_rows(session, table.__tablename__)
    if estimate is not None and estimate > exact_limit:
        return estimate, True
    return session.scalar(sa.select(sa.func.count()).select_from(table)) or 0, False


def counts(session: Session, exact_limit: int = EXACT_COUNT_LIMIT) -> Counts:
    """Row counts whose cost stops growing with history. The queue is exact (frame_queue
    holds every pending frame and its lease). Up to ``exact_limit`` rows the totals and the
    split by status are exact; past it, on PostgreSQL, the totals are the planner's estimate
    and scored/failed are left out: no index of frames may hold ``status`` (that would make
    each frame's result update non-HOT, see schema.Frame), so counting them reads every frame."""
    queued = session.scalar(sa.select(sa.func.count()).select_from(FrameQueueEntry)) or 0
    claimed = session.scalar(
        sa.select(sa.func.count()).where(FrameQueueEntry.claimed_until >= utcnow())
    ) or 0
    frames, frames_approx = _rows(session, Frame, exact_limit)
    predictions, predictions_approx = _rows(session, Prediction, exact_limit)
    by_status = {FrameStatus.PENDING: queued - claimed, FrameStatus.CLAIMED: claimed}
    if not frames_approx:
        done = dict(session.execute(
            sa.select(Frame.status, sa.func.count())
            .where(Frame.status.in_([FrameStatus.SCORED, FrameStatus.FAILED])).group_by(Frame.status)
        ).all())
        by_status |= {s: done.get(s, 0) for s in (FrameStatus.SCORED, FrameStatus.FAILED)}
    return Counts(
        frames=frames,
        frames_by_status={s.value: n for s, n in by_status.items()},
        predictions=predictions,
        flagged=session.scalar(sa.select(sa.func.count()).where(Prediction.flagged)) or 0,
        models=session.scalar(sa.select(sa.func.count()).select_from(ModelVersion)) or 0,
        approximate=frames_approx or predictions_approx,
    )
