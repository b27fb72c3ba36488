"""Alert rates per site for the Alert rates page: alerts per camera-hour per day, day
and night apart, against the manual baseline and the site's [low, high] band.

Counted like shadow.alert_rates (so the chart tells the same story as the gate and the
guard), but aggregated in SQL: camera-hours are distinct (camera, clock hour) buckets
with a usable frame, night when most of the bucket's frames are night; alerts are the
site's alerts outside manual, by the day they were made and their frame's night flag.
The baseline is the ranger-confirmed sightings per camera-hour of the manual period
before the latest promotion (see baseline_period) (shadow.alert_rates.bear_frames + group_sightings: few rows)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session

from bearwatch.schema import Alert, Camera, Frame, Site, Stage, StageChange
from dashboard.queries.buckets import day_bucket, hour_bucket
from shadow.alert_rates import bear_frames, group_sightings
from shadow.periods import Period, stage_periods, thresholds_of, usable_frame

PERIODS = ("day", "night")


@dataclass(frozen=True)
class RatePoint:
    day: date
    period: str  # "day" or "night"
    alerts: int
    camera_hours: int
    rate: float | None  # alerts per camera-hour


@dataclass(frozen=True)
class Baseline:
    period: str
    sightings: int
    camera_hours: int
    rate: float | None


@dataclass(frozen=True)
class StageMark:
    at: datetime
    from_stage: Stage | None
    to_stage: Stage
    actor: str


@dataclass(frozen=True)
class SiteRates:
    site: str
    stage: Stage
    low: float  # the band is [low x baseline, high x baseline]
    high: float
    baseline_start: datetime | None
    baseline_end: datetime | None
    baselines: tuple[Baseline, ...]  # one per period ("day", "night")
    points: tuple[RatePoint, ...]
    stage_marks: tuple[StageMark, ...]


def camera_hours_by_day(session: Session, site_id: int, start: datetime, end: datetime) -> dict[tuple[str, str], int]:
    """(day 'YYYY-MM-DD', period) -> camera-hours with a usable frame, in [start, end)."""
    hour = hour_bucket(session, Frame.captured_at)
    night_votes = sa.func.avg(sa.case((Frame.is_night.is_(True), 1.0), else_=0.0))
    buckets = (
        sa.select(Frame.camera_id, hour.label("hour"), (night_votes > 0.5).label("night"))
        .join(Camera, Camera.id == Frame.camera_id)
        .where(Camera.site_id == site_id, Frame.captured_at >= start, Frame.captured_at < end, usable_frame())
        .group_by(Frame.camera_id, hour)
        .subquery()
    )
    day = sa.func.substr(buckets.c.hour, 1, 10)
    rows = session.execute(sa.select(day, buckets.c.night, sa.func.count()).group_by(day, buckets.c.night)).all()
    return {(d, "night" if night else "day"): int(n) for d, night, n in rows}


def alerts_by_day(session: Session, site_id: int, start: datetime, end: datetime) -> dict[tuple[str, str], int]:
    day = day_bucket(session, Alert.created_at)
    night = sa.func.coalesce(Frame.is_night, False)
    rows = session.execute(
        sa.select(day, night, sa.func.count())
        .join(Frame, Frame.id == Alert.frame_id)
        .where(Alert.site_id == site_id, Alert.stage != Stage.MANUAL, Alert.created_at >= start, Alert.created_at < end)
        .group_by(day, night)
    ).all()
    return {(d, "night" if n else "day"): int(c) for d, n, c in rows}


def baseline_period(session: Session, site: Site, now: datetime) -> Period | None:
    """The manual period the latest promotion was judged against (the one just before
    the latest non-manual period); the current manual period if the site never left it."""
    periods = stage_periods(session, site, now)
    before_promotion = [p for p, nxt in zip(periods, periods[1:]) if p.stage is Stage.MANUAL and nxt.stage is not Stage.MANUAL]
    if before_promotion:
        return before_promotion[-1]
    manual = [p for p in periods if p.stage is Stage.MANUAL]
    return manual[-1] if manual else None


def site_alert_rates(session: Session, site_name: str, start: datetime, end: datetime) -> SiteRates | None:
    site = session.scalar(sa.select(Site).where(Site.name == site_name))
    if site is None:
        return None
    t = thresholds_of(site)
    hours = camera_hours_by_day(session, site.id, start, end)
    alerts = alerts_by_day(session, site.id, start, end)
    points = []
    for d, period in sorted(set(hours) | set(alerts)):
        h, a = hours.get((d, period), 0), alerts.get((d, period), 0)
        points.append(RatePoint(date.fromisoformat(d), period, a, h, a / h if h else None))
    manual = baseline_period(session, site, end)
    baselines: list[Baseline] = []
    if manual is not None:
        base_hours = camera_hours_by_day(session, site.id, manual.start, manual.end)
        sightings = group_sightings(bear_frames(session, site, manual.start, manual.end), t.alert_cooldown_s)
        for period in PERIODS:
            n = sum(1 for _, _, night in sightings if bool(night) == (period == "night"))
            h = sum(v for (_, p), v in base_hours.items() if p == period)
            baselines.append(Baseline(period, n, h, n / h if h else None))
    marks = session.execute(
        sa.select(StageChange.changed_at, StageChange.from_stage, StageChange.to_stage, StageChange.actor)
        .where(StageChange.site_id == site.id, StageChange.changed_at >= start, StageChange.changed_at < end)
        .order_by(StageChange.changed_at)
    ).all()
    return SiteRates(
        site=site.name, stage=site.stage, low=t.alert_ratio_low, high=t.alert_ratio_high,
        baseline_start=manual.start if manual else None, baseline_end=manual.end if manual else None,
        baselines=tuple(baselines), points=tuple(points),
        stage_marks=tuple(StageMark(at, f, to, actor) for at, f, to, actor in marks),
    )
