"""Alert rates against the manual baseline (design.md sections 1 and 5).

The unit is the *episode* (shadow.episodes): events on one camera less than the
baseline's episode gap apart count once, so a lingering bear's burst of alerts counts
once, and the band moves to episodes (RateComparison.test carries it). Baseline: the
site's ranger-confirmed bear episodes per camera-hour during its latest manual period
(bear frames: shadow.truth says bear). Current: the site's alert episodes per camera-hour
since it left manual (any status: the model's alert rate, not only confirmed ones).

Camera-hours: distinct (camera, clock hour) buckets holding at least one usable frame
(not black/near-uniform, see :mod:`shadow.periods`), so a dark camera adds no hours.
A bucket is night when most of its frames are ``is_night``. Read by shadow.camera_hours
(closed hours kept in the database, and cached per process). Rates are compared per
day/night period when each period has at least ``MIN_PERIOD_EVENTS`` baseline events
(indirect standardisation: the current exposure is weighted by the baseline's
night/day rate), pooled otherwise. Hours of a period the baseline never saw are left
out of the current exposure, and so are its alerts.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session

from bearwatch.park_file import Thresholds
from bearwatch.schema import FRAME_VOTES_BEAR_PREDICATE, Alert, Camera, Frame, FrameVotes, Site, Stage
from shadow.camera_hours import site_hours
from shadow.closed_spans import ClosedSpans, FrameKey, hour_of
from shadow.episodes import episode_band, episode_gap_s
from shadow.periods import Period, latest_manual_period
from shadow.stats import RateRatio, rate_ratio_test
from shadow.truth import is_bear_sql

MIN_PERIOD_EVENTS = 5


@dataclass(frozen=True)
class Exposure:
    day_events: int
    night_events: int
    day_hours: float
    night_hours: float
    gap_s: float = 0.0  # the episode gap the events were grouped by (shadow.episodes)

    @property
    def events(self) -> int:
        return self.day_events + self.night_events

    @property
    def hours(self) -> float:
        return self.day_hours + self.night_hours

    @property
    def rate(self) -> float | None:
        return self.events / self.hours if self.hours else None


def camera_hours(frames: Iterable[FrameKey]) -> tuple[float, float]:
    """(day hours, night hours): distinct camera-hour buckets with a frame, each night
    when most of its frames are night frames."""
    votes: dict[tuple[int, datetime], list[int]] = defaultdict(lambda: [0, 0])
    for camera_id, at, night in frames:
        votes[(camera_id, hour_of(at))][1 if night else 0] += 1
    night_hours = sum(1 for day_n, night_n in votes.values() if night_n > day_n)
    return float(len(votes) - night_hours), float(night_hours)


def group_sightings(bear_frames: Iterable[FrameKey], cooldown_s: float) -> list[FrameKey]:
    """One event per run of keys on a camera with gaps <= ``cooldown_s`` (sightings by
    the cooldown, episodes by :func:`episode_gap_s`); the event is its first key."""
    by_camera: dict[int, list[FrameKey]] = defaultdict(list)
    for key in bear_frames:
        by_camera[key[0]].append(key)
    sightings: list[FrameKey] = []
    for keys in by_camera.values():
        keys.sort(key=lambda k: k[1])
        last: datetime | None = None
        for key in keys:
            if last is None or (key[1] - last).total_seconds() > cooldown_s:
                sightings.append(key)
            last = key[1]
    return sorted(sightings, key=lambda k: k[1])


def exposure(events: Iterable[FrameKey], frames: Iterable[FrameKey], gap_s: float = 0.0) -> Exposure:
    day_h, night_h = camera_hours(frames)
    day_e = night_e = 0
    for _, _, night in events:
        if night:
            night_e += 1
        else:
            day_e += 1
    return Exposure(day_e, night_e, day_h, night_h, gap_s)


def baseline_of(bear_keys: Sequence[FrameKey], hour_keys: Sequence[FrameKey], t: Thresholds) -> Exposure:
    """Pure: the baseline's bear episodes, its gap chosen from its own busyness."""
    day_h, night_h = camera_hours(hour_keys)
    hours = day_h + night_h
    busy = len(group_sightings(bear_keys, t.alert_cooldown_s)) / hours if hours else None
    gap = episode_gap_s(t, busy)
    return exposure(group_sightings(bear_keys, gap), hour_keys, gap)


@dataclass(frozen=True)
class RateComparison:
    baseline: Exposure
    current: Exposure
    test: RateRatio  # on the (standardised) exposures
    standardised: bool  # day/night weighted (True) or pooled (False)
    day_ratio: float | None
    night_ratio: float | None


def _ratio(e1: int, h1: float, e0: int, h0: float) -> float | None:
    if not h1 or not h0 or not e0:
        return None
    return (e1 / h1) / (e0 / h0)


def compare_rates(baseline: Exposure, current: Exposure, *, low: float, high: float) -> RateComparison | None:
    """Current vs baseline rate with the exact rate-ratio test; None without a baseline
    (no baseline camera-hours) or without current camera-hours it can be compared on.
    [low, high] is the band on alert ratios; the test carries it moved to the baseline's
    episodes (shadow.episodes.episode_band)."""
    day_ok = baseline.day_hours > 0
    night_ok = baseline.night_hours > 0
    x1 = (current.day_events if day_ok else 0) + (current.night_events if night_ok else 0)
    h1_day = current.day_hours if day_ok else 0.0
    h1_night = current.night_hours if night_ok else 0.0
    if baseline.hours <= 0 or h1_day + h1_night <= 0:
        return None
    standardised = (
        day_ok and night_ok
        and baseline.day_events >= MIN_PERIOD_EVENTS and baseline.night_events >= MIN_PERIOD_EVENTS
    )
    if standardised:
        overall = baseline.events / baseline.hours
        w_day = baseline.day_events / baseline.day_hours / overall
        w_night = baseline.night_events / baseline.night_hours / overall
        t1 = h1_day * w_day + h1_night * w_night
    else:
        t1 = h1_day + h1_night
    low, high = episode_band(baseline.events, baseline.hours, baseline.gap_s, low, high)
    test = rate_ratio_test(x1, t1, baseline.events, baseline.hours, low=low, high=high)
    return RateComparison(
        baseline, current, test, standardised,
        _ratio(current.day_events, current.day_hours, baseline.day_events, baseline.day_hours) if day_ok else None,
        _ratio(current.night_events, current.night_hours, baseline.night_events, baseline.night_hours) if night_ok else None,
    )


# --- gathering the data ---


@dataclass(frozen=True)
class Scope:
    """Which cameras and hours of day (UTC) count; None: all."""

    cameras: frozenset[int] | None = None
    hours: frozenset[int] | None = None

    def keeps(self, key: FrameKey) -> bool:
        return (self.cameras is None or key[0] in self.cameras) and (self.hours is None or key[1].hour in self.hours)

    def filter(self, keys: Iterable[FrameKey]) -> list[FrameKey]:
        return [k for k in keys if self.keeps(k)]


ALL = Scope()


def trial_scope_of(site: Site) -> Scope:
    """The limited stage's scope: ``trial_scope`` {"cameras": [camera ids], "hours": [0..23]}
    (empty or missing: all). Baseline and current are both measured on it, so the trial's
    alerts are compared with sightings on the same cameras and hours."""
    if site.stage is not Stage.LIMITED:
        return ALL
    scope = site.trial_scope or {}
    cams = {int(c) for c in scope.get("cameras") or []}
    hours = {int(h) for h in scope.get("hours") or []}
    return Scope(frozenset(cams) or None, frozenset(hours) or None)


# The partial index's predicate as a literal: both databases prove a partial index from
# literals, not from bound parameters (bearwatch.schema.FrameVotes' bear index).
_HAS_BEAR_VOTE = sa.literal_column(f"frame_votes.{FRAME_VOTES_BEAR_PREDICATE}", sa.Boolean)


def bear_frames(session: Session, site: Site, start: datetime, end: datetime) -> list[FrameKey]:
    """Frames whose truth is bear (shadow.truth.truth_of: every ranger, or a majority of
    three or more), read from the verdicts' summary (frame_votes) through its index of
    frames with a bear vote: the work is the period's bear frames, not its frames."""
    cameras = sa.select(Camera.id).where(Camera.site_id == site.id).scalar_subquery()
    rows = session.execute(
        sa.select(FrameVotes.camera_id, FrameVotes.captured_at, Frame.is_night)
        .join(Frame, Frame.id == FrameVotes.frame_id)
        .where(FrameVotes.camera_id.in_(cameras), _HAS_BEAR_VOTE, FrameVotes.captured_at >= start,
               FrameVotes.captured_at < end, is_bear_sql(FrameVotes.bears, FrameVotes.votes))
        .order_by(FrameVotes.camera_id, FrameVotes.captured_at)
    ).all()
    return [(c, at, night) for c, at, night in rows]


def baseline_exposure(session: Session, site: Site, period: Period, t: Thresholds, scope: Scope = ALL) -> Exposure:
    """Ranger-confirmed bear episodes of ``period`` and its camera-hours."""
    return baseline_of(scope.filter(bear_frames(session, site, period.start, period.end)),
                       scope.filter(site_hours(session, site, period.start, period.end)), t)


def _read_alert_keys(session: Session, site: Site, start: datetime, end: datetime) -> list[FrameKey]:
    rows = session.execute(
        sa.select(Alert.camera_id, Alert.created_at, Frame.is_night)
        .join(Frame, Frame.id == Alert.frame_id)
        .where(Alert.site_id == site.id, Alert.stage != Stage.MANUAL, Alert.created_at >= start, Alert.created_at < end)
    ).all()
    return [(c, at, night) for c, at, night in rows]


# Alerts are made at the time they carry (created_at) and that, their camera and frame never
# change, so a closed hour's alerts are read once per process: the guard's pass every minute
# read every alert since promotion (about 1,800 a site at the season bench's 10M frames,
# each joined to its frame). At most 500,000 alerts in all.
_CLOSED_ALERTS = ClosedSpans(256, max_keys=500_000)


def clear_alerts_cache() -> None:
    _CLOSED_ALERTS.clear()


def alert_keys(session: Session, site: Site, start: datetime, end: datetime) -> list[FrameKey]:
    """The site's alerts outside manual made in [start, end): (camera, created at, night)."""
    def read(a: datetime, b: datetime) -> list[FrameKey]:
        return _read_alert_keys(session, site, a, b)

    return _CLOSED_ALERTS.read((str(session.get_bind().engine.url), site.id), start, end, closed=read, fresh=read)


def current_exposure(session: Session, site: Site, start: datetime, end: datetime, gap_s: float,
                     scope: Scope = ALL) -> Exposure:
    """The model's alert episodes (by the baseline's ``gap_s``) in [start, end) and their camera-hours."""
    episodes = group_sightings(scope.filter(alert_keys(session, site, start, end)), gap_s)
    return exposure(episodes, scope.filter(site_hours(session, site, start, end)), gap_s)


def alert_rate_comparison(session: Session, site: Site, now: datetime, thresholds: Thresholds) -> RateComparison | None:
    """The site's alert rate since it left manual against its manual baseline, both on
    the trial scope while limited; None while in manual or without a baseline."""
    if site.stage is Stage.MANUAL:
        return None
    period = latest_manual_period(session, site, now)
    if period is None:
        return None
    scope = trial_scope_of(site)
    baseline = baseline_exposure(session, site, period, thresholds, scope)
    current = current_exposure(session, site, site.stage_since, now, baseline.gap_s, scope)
    return compare_rates(baseline, current, low=thresholds.alert_ratio_low, high=thresholds.alert_ratio_high)


@dataclass(frozen=True)
class DayRate:
    day: date
    period: str  # "day" or "night"
    events: int  # alert episodes
    camera_hours: float

    @property
    def rate(self) -> float | None:
        return self.events / self.camera_hours if self.camera_hours else None


def daily_rates(episodes: Iterable[FrameKey], hour_keys: Iterable[FrameKey]) -> list[DayRate]:
    """Pure: episodes and camera-hours per UTC day, day and night apart (an episode by its
    first frame, an hour by its frames' majority), in day order, day before night."""
    counts: dict[tuple[date, str], list[float]] = defaultdict(lambda: [0, 0.0])
    for _, at, night in episodes:
        counts[(at.date(), "night" if night else "day")][0] += 1
    for _, at, night in hour_keys:
        counts[(at.date(), "night" if night else "day")][1] += 1.0
    return [DayRate(d, period, int(n), h) for (d, period), (n, h) in sorted(counts.items())]


def daily_alert_rates(session: Session, site: Site, start: datetime, end: datetime, gap_s: float,
                      scope: Scope = ALL) -> list[DayRate]:
    """The chart's points: the site's alert episodes per camera-hour per UTC day in
    [start, end), grouped over the whole window as the guard groups them (an episode over
    midnight counts once), in two statements whatever the window's length."""
    episodes = group_sightings(scope.filter(alert_keys(session, site, start, end)), gap_s)
    return daily_rates(episodes, scope.filter(site_hours(session, site, start, end)))


def hours_between(start: datetime, end: datetime) -> float:
    return (end - start) / timedelta(hours=1)
