"""Episodes: the unit the guard counts (design.md section 5; docs/calibration.md section 4).

One bear that lingers sends a burst of alerts (each more than the cooldown after the
last), so alert counts are overdispersed and the guard's e-process, which assumes
independent (Poisson) events, demotes healthy sites: 0.32 over 60 days instead of at most
0.05 in bench/calibration.py. Counting *episodes* (events on one camera less than a gap G
apart count once, on both sides of the comparison) makes bursts count once.

The price is that independent events closer than G merge too, more often the busier the
camera, so an episode ratio understates the alert ratio. For events starting as a
Poisson process at rate lam per camera-hour (bursts short against G), an event begins a
new episode when no event came in the G before it: episodes arrive at lam * exp(-lam G).
Two consequences, both handled here:

- G shrinks on busy cameras (:func:`episode_gap_s`): at most ``MAX_MERGE / lam`` hours, so
  lam G <= MAX_MERGE and the map from alert ratio to episode ratio stays increasing well
  past the band;
- the band moves to episodes (:func:`episode_band`): an alert ratio R is an episode ratio
  R exp(-(R - 1) lam0 G), with lam0 recovered from the baseline's episode rate by the
  Lambert W function (:func:`underlying_rate`). So the guard keeps its band in alerts:
  a site whose alert rate truly doubles is at the episode band's edge. The map peaks at
  R = 1 / (lam0 G) (10 at MAX_MERGE) and falls past it: a band edge beyond the peak is
  held at the peak (:func:`band_edge`), which the episodes of any ratio up to that edge
  stay under, so the test keeps its level; mapped as it is, a wider band would be a
  narrower one (a high of 20 a tighter edge than 10) and 1e6 an edge of 0.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from scipy.special import lambertw

from bearwatch.park_file import Thresholds
from shadow.sequential import ratio_decision

# The most lam * G may be (10% of independent events merge). In the bench, 0.25 cost the
# busy sites most of their power to catch a tripling and 0.05 let bursts through.
MAX_MERGE = 0.1


def episode_gap_s(t: Thresholds, events_per_camera_hour: float | None = None) -> float:
    """G in seconds: ``guard_episode_gap_s``, less on a camera busier than MAX_MERGE / G
    (``events_per_camera_hour``: the baseline's sightings, grouped by the cooldown only),
    never below the alert cooldown (alerts closer than that are one alert already)."""
    gap = t.guard_episode_gap_s
    if events_per_camera_hour and events_per_camera_hour > 0:
        gap = min(gap, 3600.0 * MAX_MERGE / events_per_camera_hour)
    return max(t.alert_cooldown_s, gap)


def underlying_rate(episodes_per_hour: float, gap_h: float) -> float:
    """The event rate lam whose episodes arrive at ``episodes_per_hour``:
    lam exp(-lam G) = e solved on the branch lam G <= 1 (lam = -W(-e G) / G)."""
    if gap_h <= 0 or episodes_per_hour <= 0:
        return max(episodes_per_hour, 0.0)
    z = episodes_per_hour * gap_h
    if z >= 1.0 / math.e:  # past the map's peak: the most it can be on that branch
        return 1.0 / gap_h
    return float(-lambertw(-z).real) / gap_h


def episode_ratio(alert_ratio: float, lam0_gap: float) -> float:
    """The episode ratio of an alert ratio R at baseline lam0 * G: R exp(-(R - 1) lam0 G)."""
    return alert_ratio * math.exp(-(alert_ratio - 1.0) * lam0_gap)


def merge_load(baseline_episodes: int, baseline_camera_hours: float, gap_s: float) -> float:
    """lam0 * G at this baseline, at most MAX_MERGE: where the cooldown keeps the gap from
    shrinking that far (a very busy camera), the band moves no further, which leans
    against demoting (the map stays increasing and the band holds 1)."""
    if baseline_camera_hours <= 0 or baseline_episodes <= 0 or gap_s <= 0:
        return 0.0
    gap_h = gap_s / 3600.0
    return min(MAX_MERGE, underlying_rate(baseline_episodes / baseline_camera_hours, gap_h) * gap_h)


def band_edge(alert_ratio: float, lam0_gap: float) -> float:
    """A band edge on alert ratios as an edge on episode ratios: ``episode_ratio`` up to its
    peak (R = 1 / lam0 G), the peak past it (the episode ratio of no alert ratio is
    higher, so no site inside the band is outside the moved one)."""
    if lam0_gap > 0:
        alert_ratio = min(alert_ratio, 1.0 / lam0_gap)
    return episode_ratio(alert_ratio, lam0_gap)


def episode_band(baseline_episodes: int, baseline_camera_hours: float, gap_s: float, low: float,
                 high: float) -> tuple[float, float]:
    """The guard's band [low, high] on alert ratios, as a band on episode ratios at this
    baseline (a plug-in of lam0: a short or empty baseline leaves the band as it is)."""
    c = merge_load(baseline_episodes, baseline_camera_hours, gap_s)
    return band_edge(low, c), band_edge(high, c)


def days_to_demote(baseline_episodes: int, baseline_camera_hours: float, camera_hours_per_day: float, gap_s: float,
                   t: Thresholds, alert_ratio: float, max_days: int = 365) -> int | None:
    """Days into a stage until the guard demotes a site whose alert rate is ``alert_ratio``
    times its baseline, if its episodes came in exactly at their expected count: what the
    baseline lets the guard see (a short baseline caps the evidence however long the stage
    runs). None: not within ``max_days``."""
    if baseline_episodes <= 0 or baseline_camera_hours <= 0 or camera_hours_per_day <= 0:
        return None
    rate0 = baseline_episodes / baseline_camera_hours
    c = merge_load(baseline_episodes, baseline_camera_hours, gap_s)
    low, high = band_edge(t.alert_ratio_low, c), band_edge(t.alert_ratio_high, c)  # episode_band's
    per_hour = episode_ratio(alert_ratio, c) * rate0

    def demoted(days: int) -> bool:
        hours = camera_hours_per_day * days
        d = ratio_decision(round(per_hour * hours), hours, baseline_episodes, baseline_camera_hours, low=low, high=high,
                           alpha=t.guard_significance)
        return d.up if alert_ratio > 1 else d.down

    found = next((d for d in (1, 2, 4, 8, 16, 32, 64, 128, 256, max_days) if d <= max_days and demoted(d)), None)
    return None if found is None else _least(demoted, found // 2, found)


def baseline_days_needed(baseline_episodes: int, baseline_camera_hours: float, camera_hours_per_day: float,
                         t: Thresholds, alert_ratio: float, within_days: int, max_days: int = 365) -> int | None:
    """More manual days (at the baseline's rate) after which the guard would demote a site
    at ``alert_ratio`` within ``within_days`` (at expected counts); 0: already; None: not
    within ``max_days`` more (or no baseline rate yet)."""
    if baseline_episodes <= 0 or camera_hours_per_day <= 0:
        return None
    rate = baseline_episodes / baseline_camera_hours

    def enough(extra: int) -> bool:
        hours = baseline_camera_hours + camera_hours_per_day * extra
        episodes = round(rate * hours)
        days = days_to_demote(episodes, hours, camera_hours_per_day, episode_gap_s(t, rate), t, alert_ratio,
                              max_days=within_days)
        return days is not None

    if enough(0):
        return 0
    return _least(enough, 0, max_days) if enough(max_days) else None


def _least(holds: Callable[[int], bool], lo: int, hi: int) -> int:
    """The least k in (lo, hi] where ``holds`` (false at lo, true at hi, monotone)."""
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if holds(mid):
            hi = mid
        else:
            lo = mid
    return hi
