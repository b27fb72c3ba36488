"""Alert rates per site for the Alert rates page, as the guard counts them: every figure
comes from shadow.alert_rates, the one definition the guard, the gates, the CLI and this
page share (design.md section 5; no second implementation here).

- Baseline: ranger-confirmed bear episodes (shadow.episodes) per camera-hour of the site's latest manual period
  (shadow.periods.latest_manual_period), on the trial scope while the site is limited.
  In limited and expanded it is ``alert_rate_comparison``'s own baseline, the one the
  guard tests against. In manual, the one the guard used in the site's last stage out of
  manual when that stage is in the window (its alerts are on the chart; a past trial's
  scope is not kept, so on all cameras and hours), else the current manual period's: the
  one a promotion now would be tested against.
- Daily points: the site's alert episodes (outside manual, by the baseline's gap, grouped
  over the whole window as the guard groups them) per camera-hour per UTC day, day and
  night apart, on the same scope: ``daily_alert_rates`` (camera-hours are (camera, clock
  hour) buckets with a usable frame, night by majority, as the guard's).
- The guard now (limited, expanded): ``alert_rate_comparison``'s ratio and
  ``shadow.guard.rate_decision``'s e-values against the level at which it demotes.

Statements: the site, its cameras, the ledger (periods, stage marks), the baseline (2)
and, in limited or expanded, the current exposure (2), then the daily points (2, whatever
the window's length).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session

from bearwatch.schema import Camera, Site, Stage, StageChange
from dashboard.queries.rollout import scope_text
from shadow.alert_rates import (
    DayRate,
    Exposure,
    alert_rate_comparison,
    baseline_exposure,
    daily_alert_rates,
    trial_scope_of,
)
from shadow.episodes import episode_gap_s
from shadow.guard import rate_decision
from shadow.periods import latest_manual_period, stage_periods, thresholds_of

PERIODS = ("day", "night")
GUARD_METHOD = ("anytime-valid e-process (mixture SPRT) on the conditional binomial of alert episodes and baseline "
                "bear episodes (shadow.episodes)")


@dataclass(frozen=True)
class Baseline:
    period: str
    sightings: int
    camera_hours: float
    rate: float | None


@dataclass(frozen=True)
class StageMark:
    at: datetime
    from_stage: Stage | None
    to_stage: Stage
    actor: str


@dataclass(frozen=True)
class GuardView:
    """What the guard's alert-rate test sees now (shadow.guard)."""

    ratio: float | None  # current rate / baseline rate (None: no baseline sighting)
    alerts: int  # x1: alerts since the site left manual, on the scope
    exposure: float  # t1: their camera-hours (day/night weighted when standardised)
    baseline_sightings: int  # x0
    baseline_camera_hours: float  # t0
    standardised: bool  # day and night weighted by the baseline's rates (else pooled)
    day_ratio: float | None
    night_ratio: float | None
    e_up: float  # e-value against "ratio <= high"
    e_down: float  # e-value against "ratio >= low"
    level: float  # the guard demotes when either reaches it (2 / alpha)
    alpha: float  # the false-demotion probability over the whole stage
    demotes: bool  # outside the band now: the guard's next run demotes
    direction: str | None  # "up" or "down" when it demotes
    method: str = GUARD_METHOD


@dataclass(frozen=True)
class SiteRates:
    site: str
    stage: Stage
    low: float  # the band is [low x baseline, high x baseline]
    high: float
    baseline_start: datetime | None
    baseline_end: datetime | None
    baselines: tuple[Baseline, ...]  # one per period ("day", "night")
    points: tuple[DayRate, ...]  # alert episodes per camera-hour, per UTC day and period
    stage_marks: tuple[StageMark, ...]
    scope: str = "all cameras, all hours"  # what the baseline and points count
    guard: GuardView | None = None  # limited, expanded: the guard's test now
    baseline_note: str = ""  # whose baseline it is, for people


def _baselines(e: Exposure) -> tuple[Baseline, ...]:
    return (Baseline("day", e.day_events, e.day_hours, e.day_events / e.day_hours if e.day_hours else None),
            Baseline("night", e.night_events, e.night_hours, e.night_events / e.night_hours if e.night_hours else None))


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None


def site_alert_rates(session: Session, site_name: str, start: datetime, end: datetime) -> SiteRates | None:
    """The site's rates over [start, end), and the guard's view at ``end``."""
    site = session.scalar(sa.select(Site).where(Site.name == site_name))
    if site is None:
        return None
    t = thresholds_of(site)
    scope = trial_scope_of(site)
    cameras = dict(session.execute(sa.select(Camera.id, Camera.name).where(Camera.site_id == site.id)).all())
    scope_line = scope_text(site.trial_scope, cameras, site.timezone, end) if site.stage is Stage.LIMITED else "all cameras, all hours"
    period = latest_manual_period(session, site, end)
    note = "the guard's baseline now"
    if site.stage is Stage.MANUAL:
        note = "the current manual period: the baseline a promotion now would be guarded against"
        out = [p for p in stage_periods(session, site, end) if p.stage is not Stage.MANUAL]
        if out and out[-1].end > start:
            period = latest_manual_period(session, site, out[-1].start)
            note = f"the baseline the guard used while {out[-1].stage.value}, until {out[-1].end:%Y-%m-%d %H:%M}Z"
    comparison = alert_rate_comparison(session, site, end, t)
    guard = None
    if comparison is not None:
        baseline: Exposure | None = comparison.baseline
        test = comparison.test
        decision = rate_decision(test, t)
        guard = GuardView(
            ratio=_finite(test.ratio), alerts=test.x1, exposure=test.t1, baseline_sightings=test.x0,
            baseline_camera_hours=test.t0, standardised=comparison.standardised, day_ratio=comparison.day_ratio,
            night_ratio=comparison.night_ratio, e_up=decision.e_up, e_down=decision.e_down, level=decision.level,
            alpha=t.guard_significance, demotes=decision.outside,
            direction="up" if decision.up else "down" if decision.down else None,
        )
    else:
        baseline = baseline_exposure(session, site, period, t, scope) if period is not None else None
    gap_s = baseline.gap_s if baseline is not None else episode_gap_s(t)
    points = [r for r in daily_alert_rates(session, site, start, end, gap_s, scope) if r.events or r.camera_hours]
    marks = session.execute(
        sa.select(StageChange.changed_at, StageChange.from_stage, StageChange.to_stage, StageChange.actor)
        .where(StageChange.site_id == site.id, StageChange.changed_at >= start, StageChange.changed_at < end)
        .order_by(StageChange.changed_at)
    ).all()
    return SiteRates(
        site=site.name, stage=site.stage, low=t.alert_ratio_low, high=t.alert_ratio_high,
        baseline_start=period.start if period else None, baseline_end=period.end if period else None,
        baselines=_baselines(baseline) if baseline is not None else (), points=tuple(points),
        stage_marks=tuple(StageMark(at, f, to, actor) for at, f, to, actor in marks), scope=scope_line, guard=guard,
        baseline_note=note,
    )
