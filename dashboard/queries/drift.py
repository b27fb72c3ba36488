"""Drift per site for the Drift page: daily image statistics, score distribution and
out-of-domain share aggregated in SQL over frames and the rollout model's predictions;
the stored drift checks (drift_events: each metric's statistic and alarm, embedding
drift among them); the reference window and the cameras' health beside them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from bearwatch.schema import Camera, CameraHealth, DriftEvent, Frame, Prediction, Site, Stage
from dashboard.queries.buckets import day_bucket
from shadow.drift import reference_window
from shadow.drift_sampling import OOD_THRESHOLD
from shadow.periods import thresholds_of, usable_frame

SCORE_BINS = 10  # the score histogram: [0, 0.1), ..., [0.9, 1]


@dataclass(frozen=True)
class DayStats:
    day: date
    frames: int
    brightness: float | None
    sharpness: float | None
    night_share: float | None
    mean_score: float | None
    flag_share: float | None
    ood_share: float | None  # share of scored frames with an out-of-domain score above OOD_THRESHOLD


@dataclass(frozen=True)
class ScoreBin:
    day: date
    low: float  # the bin [low, low + 1/SCORE_BINS)
    count: int


@dataclass(frozen=True)
class DriftPoint:
    at: datetime  # the checked window's end
    metric: str
    statistic: float
    min_effect: float | None
    p_value: float | None
    alarm: bool


@dataclass(frozen=True)
class DriftCheckRow:
    at: datetime
    alarm: bool
    detail: str
    reference_start: datetime
    reference_end: datetime


@dataclass(frozen=True)
class DriftCamera:
    """A camera of the site beside its drift charts (a dark camera changes what is compared)."""

    name: str
    enabled: bool
    health: CameraHealth
    last_frame_at: datetime | None


@dataclass(frozen=True)
class SiteDrift:
    site: str
    stage: Stage
    reference: tuple[datetime, datetime] | None  # the window the current one is compared with
    reference_is_stored: bool  # True: none for the next check; this is the latest stored check's
    days: tuple[DayStats, ...]
    score_bins: tuple[ScoreBin, ...]
    points: tuple[DriftPoint, ...]
    checks: tuple[DriftCheckRow, ...]  # newest first
    cameras: tuple[DriftCamera, ...]


def _f(value: Any) -> float | None:
    return None if value is None else float(value)


def site_drift(session: Session, site_name: str, start: datetime, end: datetime, now: datetime, *, checks: int = 500) -> SiteDrift | None:
    site = session.scalar(sa.select(Site).where(Site.name == site_name))
    if site is None:
        return None
    model_id = site.rollout_model_id if site.rollout_model_id is not None else -1
    day = day_bucket(session, Frame.captured_at)
    base = (
        sa.select(Frame.id)
        .join(Camera, Camera.id == Frame.camera_id)
        .outerjoin(Prediction, sa.and_(Prediction.frame_id == Frame.id, Prediction.model_version_id == model_id))
        .where(Camera.site_id == site.id, Frame.captured_at >= start, Frame.captured_at < end, usable_frame())
    )
    one = lambda cond: sa.case((cond, 1.0), else_=0.0)  # noqa: E731
    night_known = sa.func.count(Frame.is_night)
    ood_known = sa.func.count(Prediction.ood_score)
    rows = session.execute(
        base.with_only_columns(
            day, sa.func.count(), sa.func.avg(Frame.brightness), sa.func.avg(Frame.sharpness),
            sa.func.sum(one(Frame.is_night.is_(True))), night_known,
            sa.func.avg(Prediction.positive_score), sa.func.count(Prediction.id), sa.func.sum(one(Prediction.flagged.is_(True))),
            sa.func.sum(one(Prediction.ood_score > OOD_THRESHOLD)), ood_known,
        ).group_by(day).order_by(day)
    ).all()
    days = tuple(
        DayStats(
            day=date.fromisoformat(d), frames=int(n), brightness=_f(b), sharpness=_f(s),
            night_share=float(nights) / nk if nk else None, mean_score=_f(score),
            flag_share=float(flags) / scored if scored else None, ood_share=float(ood) / ok if ok else None,
        )
        for d, n, b, s, nights, nk, score, scored, flags, ood, ok in rows
    )
    bin_ = sa.func.min(sa.cast(sa.func.floor(Prediction.positive_score * SCORE_BINS), sa.Integer), SCORE_BINS - 1) \
        if session.get_bind().dialect.name == "sqlite" else \
        sa.func.least(sa.cast(sa.func.floor(Prediction.positive_score * SCORE_BINS), sa.Integer), SCORE_BINS - 1)
    bins = session.execute(
        base.with_only_columns(day, bin_, sa.func.count()).where(Prediction.id.is_not(None)).group_by(day, bin_).order_by(day, bin_)
    ).all()
    events = session.execute(
        sa.select(DriftEvent.window_end, DriftEvent.alarm, DriftEvent.detail, DriftEvent.reference_start,
                  DriftEvent.reference_end, DriftEvent.metrics)
        .where(DriftEvent.site_id == site.id, DriftEvent.created_at >= start, DriftEvent.created_at < end)
        .order_by(DriftEvent.created_at.desc()).limit(checks)
    ).all()
    points = [
        DriftPoint(at, name, float(m["statistic"]), _f(m.get("min_effect")), _f(m.get("p_value")), bool(m.get("alarm")))
        for at, _, _, _, _, metrics in events for name, m in sorted((metrics or {}).items())
        if isinstance(m, dict) and m.get("statistic") is not None
    ]
    cams = session.execute(
        sa.select(Camera.name, Camera.enabled, Camera.health, Camera.last_frame_at).where(Camera.site_id == site.id).order_by(Camera.name)
    ).all()
    reference = reference_window(session, site, now, thresholds_of(site))
    stored = reference is None and bool(events)
    if stored:
        reference = (events[0].reference_start, events[0].reference_end)
    return SiteDrift(
        site=site.name, stage=site.stage, reference=reference, reference_is_stored=stored, days=days,
        score_bins=tuple(ScoreBin(date.fromisoformat(d), b / SCORE_BINS, int(n)) for d, b, n in bins),
        points=tuple(sorted(points, key=lambda p: (p.at, p.metric))),
        checks=tuple(DriftCheckRow(at, alarm, detail, rs, re_) for at, alarm, detail, rs, re_, _ in events),
        cameras=tuple(DriftCamera(*c) for c in cams),
    )
