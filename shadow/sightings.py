"""Sightings, the unit of every rollout decision (design.md section 5), and the model's
sighting precision and recall estimated the way the rangers' evidence is collected.

A *sighting* is a bear's visit to one camera: a run of bear evidence (flags of bear alerts,
frames rangers said bear on) whose gaps are at most the episode gap (``gap_s``:
shadow.episodes.episode_gap_s, an hour by default, never below the cooldown), the unit
the guard counts too. Not the cooldown: inside a caught visit most frames between two
flags are never reviewed, so grouping by the cooldown split one visit into several caught
sightings (in the calibration bench, long visits gave twice as many caught sightings as
there were visits, and recall read high). What the rangers saw:

- every flagged frame of the rollout model is reviewed: flags grouped by the cooldown
  are the model's (would-be) *alerts*; an alert is a bear when a ranger said bear on
  any of its frames. A sighting with a flagged frame is *caught*.
- unflagged frames reach a ranger through the designed audit (each with its stored
  inclusion probability) or a "missed" report a ranger happened to make. A sighting
  with bear frames and no flag is a *miss*; it is *found by the design* when one of its
  frames came from the audit, else only *reported* (real, listed, a floor on the misses,
  but not a random sample).

Estimates:

- precision = bear alerts / reviewed alerts: a proportion over alerts, with its
  anytime-valid confidence sequence (:mod:`shadow.sequential`).
- recall: the Horvitz-Thompson estimate C / (C + sum 1/pi_j) over caught sightings C and
  design-found misses j, pi_j = 1 - prod(1 - pi_f) over the miss's known frames (at most
  its true chance of being found, so the estimate leans low). Its interval: caught
  sightings and design-found misses, in time order, are each "caught" with probability
  q = r / (r + (1 - r) pi) for recall r, pi the miss's chance of being found; pi is at
  least ``min_inclusion`` (a miss may be a single frame in the least-audited stratum)
  and at most 1, so the confidence sequence [q_lo, q_hi] maps to the recall bounds
  r_lo = m q_lo / (m q_lo + 1 - q_lo) with m = min_inclusion, and r_hi = q_hi. These
  hold for every sighting-length distribution and under repeated looks; the price is
  that a thin audit cannot show a high recall (the gate then says what audit would).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from shadow.sequential import Bounds, proportion_bounds
from shadow.truth import Truth

RECALL_METHOD = ("sighting recall: Horvitz-Thompson over the audit design; 95% anytime-valid bounds from the "
                 "beta-mixture confidence sequence on caught vs design-found missed sightings")
PRECISION_METHOD = "alert precision: bear alerts / reviewed alerts; 95% anytime-valid beta-mixture confidence sequence"


@dataclass(frozen=True)
class FrameObs:
    """A frame of the rollout model that the sightings read: flagged, or reviewed."""

    frame_id: int
    camera_id: int
    captured_at: datetime
    flagged: bool
    truth: Truth | None  # None: no verdict yet
    design: bool  # the review design put it before a ranger (flagged, held alert, audit)
    inclusion: float  # the design's probability of showing it (1 for flagged frames)


@dataclass(frozen=True)
class AlertGroup:
    """Flags of one camera within the cooldown: one (would-be) alert."""

    camera_id: int
    start: datetime
    end: datetime
    flags: int
    truth: Truth | None  # BEAR if any reviewed frame is a bear; None: none reviewed yet
    first_frame_id: int


@dataclass(frozen=True)
class Sighting:
    camera_id: int
    start: datetime
    end: datetime
    bear_frames: int  # frames a ranger said bear on
    caught: bool  # a flagged frame in it
    design_found: bool  # a miss found through the audit (not only reported)
    inclusion: float  # a miss: the chance the audit finds it, from its known frames
    first_frame_id: int


@dataclass(frozen=True)
class Estimate:
    """A figure with its 95% anytime-valid bounds and how it was made."""

    value: float | None
    low: float
    high: float
    successes: int
    n: int
    method: str


@dataclass(frozen=True)
class SightingReport:
    alerts: tuple[AlertGroup, ...]
    sightings: tuple[Sighting, ...]
    caught: int  # sightings with a flag
    bear_alerts: int
    false_alerts: int
    unreviewed_alerts: int
    misses_found: tuple[Sighting, ...]  # found through the audit design
    misses_reported: tuple[Sighting, ...]  # reported outside it
    min_inclusion: float
    precision: Estimate
    recall: Estimate

    @property
    def reviewed_alerts(self) -> int:
        return self.bear_alerts + self.false_alerts

    @property
    def misses(self) -> int:
        return len(self.misses_found) + len(self.misses_reported)

    @property
    def recall_ceiling(self) -> float | None:
        """Caught / (caught + every miss found or reported): the window's recall can be
        no higher (a census floor on the misses, not an estimate)."""
        total = self.caught + self.misses
        return self.caught / total if total else None


def _runs(times: Sequence[datetime], cooldown_s: float) -> list[tuple[int, int]]:
    """[start, end) index ranges of runs whose consecutive gaps are <= cooldown_s."""
    runs: list[tuple[int, int]] = []
    begin = 0
    for i in range(1, len(times) + 1):
        if i == len(times) or (times[i] - times[i - 1]).total_seconds() > cooldown_s:
            runs.append((begin, i))
            begin = i
    return runs if times else []


def _alert_truth(truths: Iterable[Truth | None]) -> Truth | None:
    seen = {t for t in truths if t is not None}
    if Truth.BEAR in seen:
        return Truth.BEAR
    if Truth.NOT_BEAR in seen:
        return Truth.NOT_BEAR
    return Truth.DISPUTED if seen else None


def _flag_runs(frames: Iterable[FrameObs], cooldown_s: float) -> list[list[FrameObs]]:
    """The model's flags grouped per camera as alerts group them (a flag within the
    cooldown of the previous flag joins its alert, as shadow.alert_rules.within_cooldown)."""
    by_camera: dict[int, list[FrameObs]] = defaultdict(list)
    for f in frames:
        if f.flagged:
            by_camera[f.camera_id].append(f)
    runs: list[list[FrameObs]] = []
    for flags in by_camera.values():
        flags.sort(key=lambda f: (f.captured_at, f.frame_id))
        runs.extend(flags[a:b] for a, b in _runs([f.captured_at for f in flags], cooldown_s))
    return runs


def alert_groups(frames: Iterable[FrameObs], cooldown_s: float) -> list[AlertGroup]:
    """The model's (would-be) alerts."""
    out = [AlertGroup(run[0].camera_id, run[0].captured_at, run[-1].captured_at, len(run),
                      _alert_truth(f.truth for f in run), run[0].frame_id) for run in _flag_runs(frames, cooldown_s)]
    return sorted(out, key=lambda g: (g.start, g.camera_id))


def sightings_of(frames: Iterable[FrameObs], cooldown_s: float, gap_s: float | None = None) -> list[Sighting]:
    """Runs of bear evidence per camera: the model's flags and the unflagged frames a
    ranger said bear on, joined when within the cooldown. A run is a sighting when it
    holds a bear (a flag of a bear alert, or a bear frame); it is caught when it holds a
    flag (the model alerted on that visit, even if a ranger dismissed that frame)."""
    frames = list(frames)
    bear_alert_flags = {f.frame_id for run in _flag_runs(frames, cooldown_s)
                        if _alert_truth(g.truth for g in run) is Truth.BEAR for f in run}
    evidence: dict[int, list[FrameObs]] = defaultdict(list)
    for f in frames:
        if f.flagged or f.truth is Truth.BEAR:
            evidence[f.camera_id].append(f)
    out: list[Sighting] = []
    for camera_id, items in evidence.items():
        items.sort(key=lambda f: (f.captured_at, f.frame_id))
        for a, b in _runs([f.captured_at for f in items], cooldown_s if gap_s is None else gap_s):
            run = items[a:b]
            bears = [f for f in run if f.frame_id in bear_alert_flags or (not f.flagged and f.truth is Truth.BEAR)]
            if not bears:
                continue  # a false alert only
            caught = any(f.flagged for f in run)
            unflagged = [f for f in run if not f.flagged]
            miss_chance = 1.0 - math.prod(1.0 - min(1.0, max(0.0, f.inclusion)) for f in unflagged)
            out.append(Sighting(camera_id, bears[0].captured_at, bears[-1].captured_at, len(bears), caught,
                                (not caught) and any(f.design for f in unflagged), 1.0 if caught else miss_chance,
                                bears[0].frame_id))
    return sorted(out, key=lambda s: (s.start, s.camera_id))


def recall_estimate(caught: int, found: Sequence[Sighting], min_inclusion: float, alpha: float = 0.05) -> Estimate:
    """Sighting recall from caught sightings and design-found misses (see the module doc)."""
    n = caught + len(found)
    if n == 0:
        return Estimate(None, 0.0, 1.0, 0, 0, RECALL_METHOD)
    weighted_misses = sum(1.0 / max(s.inclusion, min_inclusion, 1e-9) for s in found)
    value = caught / (caught + weighted_misses) if caught + weighted_misses > 0 else None
    q: Bounds = proportion_bounds(caught, n, alpha)
    m = max(0.0, min(1.0, min_inclusion))
    low = m * q.low / (m * q.low + 1.0 - q.low) if q.low < 1.0 else 1.0
    return Estimate(value, low, q.high, caught, n, RECALL_METHOD)


def precision_estimate(bear_alerts: int, reviewed: int, alpha: float = 0.05) -> Estimate:
    b = proportion_bounds(bear_alerts, reviewed, alpha)
    return Estimate(bear_alerts / reviewed if reviewed else None, b.low, b.high, bear_alerts, reviewed, PRECISION_METHOD)


def sighting_report(frames: Iterable[FrameObs], cooldown_s: float, min_inclusion: float,
                    alpha: float = 0.05, gap_s: float | None = None) -> SightingReport:
    """Alerts, sightings and the sighting-level precision and recall of one site's window."""
    frames = list(frames)
    alerts = alert_groups(frames, cooldown_s)
    sightings = sightings_of(frames, cooldown_s, gap_s)
    caught = sum(s.caught for s in sightings)
    found = tuple(s for s in sightings if not s.caught and s.design_found)
    reported = tuple(s for s in sightings if not s.caught and not s.design_found)
    bear = sum(a.truth is Truth.BEAR for a in alerts)
    false = sum(a.truth is Truth.NOT_BEAR for a in alerts)
    return SightingReport(
        alerts=tuple(alerts), sightings=tuple(sightings), caught=caught, bear_alerts=bear, false_alerts=false,
        unreviewed_alerts=sum(a.truth is None for a in alerts), misses_found=found, misses_reported=reported,
        min_inclusion=min_inclusion, precision=precision_estimate(bear, bear + false, alpha),
        recall=recall_estimate(caught, found, min_inclusion, alpha),
    )
