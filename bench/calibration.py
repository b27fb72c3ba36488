"""Operating characteristics of the rollout decisions, measured by simulation (design.md
section 5; issue 11 item 4).

    .venv/bin/python bench/calibration.py [--quick] [--out docs/calibration.md] [--seed 11]

The simulated world (bearwatch.demo.world) is run over a grid of true sighting recall,
alert precision, audit rates, miss reporting, visit lengths, day/night mixes and site
sizes; the rangers' evidence is made exactly as the system collects it (every flagged
frame reviewed, a designed audit of unflagged frames, opportunistic "missed" reports) and
fed to the SAME production functions the gates and the guard use:
shadow.sightings.sighting_report (sighting precision and recall, anytime-valid bounds),
shadow.sequential.ratio_decision (the guard's e-process), and, for comparison, the old
shadow.agreement.agreement_of (frame-level Wilson) and shadow.stats.rate_ratio_test
(a fixed-level test re-run at every look). Printed (markdown tables):

  1-2  coverage of the 95% recall and precision intervals per cell (worst cells), the
       chance the manual -> limited gate passes a model whose true recall is below the
       threshold, and its power for a good model; old frame-level figures beside them;
  3    the gate re-evaluated daily over 60 days, promoting at the first pass;
  4    the guard over 60 days of expanded: false demotions at true ratios 0.5-2.0 and the
       time to demote at ratios 3 and 1/3, new e-process against the old hourly test.

Every function here is pure and seeded, so tests/shadow/test_calibration.py runs small
versions of the key cells. No timing is asserted; the CPU time is printed.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import sys
import time
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from pathlib import Path

import numpy as np
from scipy import stats as sps
from scipy.special import logsumexp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bearwatch.demo.world import WorldSpec, camera_frames, is_night_hour, ranger_says_bear
from bearwatch.park_file import Thresholds
from bearwatch.schema import Verdict
from shadow.agreement import Confusion, ReviewedFrame, agreement_of
from shadow.agreement import rate as wilson_rate
from shadow.audit_design import in_audit, inclusion_probability, min_inclusion
from shadow.episodes import episode_band, episode_gap_s
from shadow.sequential import GUARD_THETAS, ratio_decision
from shadow.sightings import FrameObs, SightingReport, recall_estimate, sighting_report
from shadow.stats import rate_ratio_test
from shadow.truth import SETTLING_LOOKS, Truth, needs_another_look, truth_of

BASE = datetime(2026, 6, 1, tzinfo=timezone.utc)
FIRST_RANGER, SECOND_RANGER, REPORTER, SETTLER = 1, 2, 3, 4
GOAL_COVERAGE = 0.94
GOAL_ERROR = 0.05
OLD_MIN_BEARS = 20  # the old gate's minimum of bear frames (min_confirmed_bears before issue 11)


def stable_seed(*parts: object) -> int:
    """A seed from values' reprs (Python's hash() of strings changes per process)."""
    return zlib.crc32(repr(parts).encode())

# --- the shadow window (manual stage) ---


@dataclass(frozen=True)
class SiteSpec:
    """The cameras and window a gate reads."""

    cameras: int = 3
    interval_s: float = 300.0
    days: float = 14.0

    @property
    def frames_per_camera(self) -> int:
        return int(round(self.days * 86400 / self.interval_s))

    def label(self) -> str:
        return f"{self.cameras} cam x {self.days:g} d, {self.interval_s:g} s"


@dataclass
class Window:
    """One simulated shadow window as the system records it, and the world's truth."""

    obs: list[FrameObs]  # every flagged frame and every reviewed unflagged frame
    reviewed: list[ReviewedFrame]  # the same frames for the old frame-level agreement
    true_sightings: int  # runs of bear frames per camera within the cooldown
    true_caught: int  # of those, with a flagged frame
    true_alerts: int  # runs of flags per camera within the cooldown
    true_bear_alerts: int  # of those, containing a bear frame
    days: float


def _runs(times: np.ndarray, gap_s: float) -> np.ndarray:
    """Start indices of runs of sorted ``times`` whose consecutive gaps are <= gap_s."""
    if times.size == 0:
        return np.zeros(0, int)
    return np.concatenate(([0], np.flatnonzero(np.diff(times) > gap_s) + 1))


def true_groups(t_s: np.ndarray, members: np.ndarray, hit: np.ndarray, gap_s: float) -> tuple[int, int]:
    """(groups, groups with a hit): frames where ``members`` is true, grouped per camera
    by the cooldown rule (a gap above ``gap_s`` starts a new group)."""
    idx = np.flatnonzero(members)
    starts = _runs(t_s[idx], gap_s)
    if starts.size == 0:
        return 0, 0
    return int(starts.size), int(np.logical_or.reduceat(hit[idx], starts).sum())


def simulate_window(world: WorldSpec, t: Thresholds, site: SiteSpec, seed: int) -> Window:
    """The world over ``site`` and the rangers' evidence, exactly as the system collects it:
    every flagged frame reviewed by one ranger (a second with ``second_review_rate``),
    unflagged frames reviewed when the audit design picks them (``in_audit``, inclusion
    ``inclusion_probability``), and frames a ranger reported as missed on their own
    (not design; inclusion = their design probability). Frame ids are global and in
    capture order across cameras, from a random offset (a site with history)."""
    rng = np.random.default_rng(seed)
    n = site.frames_per_camera
    cams = site.cameras
    id0 = int(rng.integers(1, 2**40))
    cooldown = t.alert_cooldown_s
    thr = world.threshold
    obs: list[FrameObs] = []
    reviewed: list[ReviewedFrame] = []
    sightings = caught = alerts = bear_alerts = 0
    for cam in range(cams):
        f = camera_frames(world, rng, n, site.interval_s, start_hour=0.0)
        ids = id0 + np.arange(n) * cams + cam
        s, c = true_groups(f.t_s, f.bear, f.flagged, episode_gap_s(t))  # visits, as shadow.sightings groups them
        sightings, caught = sightings + s, caught + c
        a, b = true_groups(f.t_s, f.flagged, f.bear, cooldown)
        alerts, bear_alerts = alerts + a, bear_alerts + b
        unflagged = np.flatnonzero(~f.flagged)
        audit = np.zeros(n, bool)
        scores, nights = f.score.tolist(), f.night.tolist()
        for i in unflagged.tolist():
            audit[i] = in_audit(int(ids[i]), scores[i], nights[i], thr, t)
        design = f.flagged | audit
        shown = np.flatnonzero(design | f.reported)
        # the rangers' readings of the frames the design showed them (world truth + errors)
        first = ranger_says_bear(world, rng, f.bear[shown])
        second_asked = rng.random(shown.size) < world.second_review_rate
        second = ranger_says_bear(world, rng, f.bear[shown])
        # the second-look queue's rangers (shadow.truth.needs_another_look), fresh readings
        settling = [ranger_says_bear(world, rng, f.bear[shown]) for _ in range(SETTLING_LOOKS)]
        for k, i in enumerate(shown.tolist()):
            flagged = bool(f.flagged[i])
            yes = Verdict.CONFIRM if flagged else Verdict.MISSED
            verdicts: list[tuple[int, Verdict]] = []
            if design[i]:
                verdicts.append((FIRST_RANGER, yes if first[k] else Verdict.DISMISS))
                if second_asked[k]:
                    verdicts.append((SECOND_RANGER, yes if second[k] else Verdict.DISMISS))
            if f.reported[i] and not flagged:
                verdicts.append((REPORTER, Verdict.MISSED))
            look = 0
            while world.second_looks and len(verdicts) < SETTLING_LOOKS and needs_another_look(flagged, verdicts):
                verdicts.append((SETTLER + look, yes if settling[look][k] else Verdict.DISMISS))
                look += 1
            at = BASE + timedelta(seconds=float(f.t_s[i]))
            inclusion = 1.0 if flagged else inclusion_probability(scores[i], nights[i], False, thr, t)
            fid = int(ids[i])
            obs.append(FrameObs(fid, cam, at, flagged, truth_of(verdicts), bool(design[i]), inclusion))
            reviewed.append(ReviewedFrame(fid, cam, at, flagged, scores[i], tuple(verdicts)))
    return Window(obs, reviewed, sightings, caught, alerts, bear_alerts, site.days)


def recall_parameter(world: WorldSpec) -> float:
    """The model's sighting recall as a parameter: the visit-weighted day/night expectation
    (visits start ``night_visit_factor`` times as often at night, when the model catches
    them with ``sighting_recall * night_recall_factor``)."""
    night = is_night_hour(np.arange(24))
    weight = np.where(night, world.night_visit_factor, 1.0)
    recall = np.where(night, world.sighting_recall * world.night_recall_factor, world.sighting_recall)
    return float((weight * recall).sum() / weight.sum())


LONG_RUN_DAYS = 7300  # one camera, 20 years


@lru_cache(maxsize=None)
def long_run(world: WorldSpec, interval_s: float, cooldown_s: float, days: int = LONG_RUN_DAYS,
             gap_s: float | None = None) -> tuple[float, float, int, int]:
    """(alert precision, sighting recall, alerts, sightings) of the world over a long run:
    the share of cooldown-grouped flags containing a bear frame (precision's parameter),
    and the share of true sightings (visits grouped by ``gap_s``) with a flag."""
    rng = np.random.default_rng(stable_seed(world, interval_s, cooldown_s, days))
    n = int(round(days * 86400 / interval_s))
    f = camera_frames(world, rng, n, interval_s)
    s, c = true_groups(f.t_s, f.bear, f.flagged, gap_s or cooldown_s)
    a, b = true_groups(f.t_s, f.flagged, f.bear, cooldown_s)
    return b / a, c / s, a, s


@dataclass(frozen=True)
class Outcome:
    """One replicate's figures: new (sightings, anytime-valid) and old (frames, Wilson)."""

    recall: tuple[float | None, float, float]  # value, low, high
    precision: tuple[float | None, float, float]
    realized_recall: float | None
    realized_precision: float | None
    sightings: int  # true sightings in the window
    caught: int  # caught sightings the rangers confirmed (estimator's C)
    misses_found: int
    misses_reported: int
    new_recall_pass: bool
    new_pass: bool
    old_recall: tuple[float | None, float, float]  # frame-level, Wilson
    old_precision: tuple[float | None, float, float]
    old_pass: bool


def _triple(value: float | None, ci: object | None) -> tuple[float | None, float, float]:
    if ci is None:
        return value, 0.0, 1.0
    return value, float(ci.low), float(ci.high)  # type: ignore[attr-defined]


def report_of(window_obs: Sequence[FrameObs], t: Thresholds) -> SightingReport:
    return sighting_report(window_obs, cooldown_s=t.alert_cooldown_s, min_inclusion=min_inclusion(t),
                           gap_s=episode_gap_s(t))


def new_gate_passes(rep: SightingReport, t: Thresholds) -> bool:
    """The manual -> limited gate's statistical checks: both lower bounds reach their thresholds."""
    return rep.recall.low >= t.min_recall_lower and rep.precision.low >= t.min_precision_lower


def old_gate_passes(c: Confusion, days: float, t: Thresholds) -> tuple[bool, tuple[float | None, float, float],
                                                                        tuple[float | None, float, float]]:
    """The old manual -> limited gate (shadow/gates.py before issue 11): the window, >= 300
    reviewed frames, >= 20 bear frames, frame-level Wilson lower bounds of recall and precision."""
    rec = wilson_rate(c.tp, c.tp + c.fn)
    prec = wilson_rate(c.tp, c.tp + c.fp)
    r, p = _triple(rec.value, rec.ci), _triple(prec.value, prec.ci)
    ok = (days >= t.shadow_days and c.reviewed >= t.min_reviewed and c.bears >= OLD_MIN_BEARS
          and rec.ci is not None and prec.ci is not None and r[1] >= t.min_recall_lower and p[1] >= t.min_precision_lower)
    return ok, r, p


def evaluate(window: Window, t: Thresholds) -> Outcome:
    rep = report_of(window.obs, t)
    old = agreement_of(window.reviewed)
    old_ok, old_r, old_p = old_gate_passes(old.confusion, window.days, t)
    return Outcome(
        recall=(rep.recall.value, rep.recall.low, rep.recall.high),
        precision=(rep.precision.value, rep.precision.low, rep.precision.high),
        realized_recall=window.true_caught / window.true_sightings if window.true_sightings else None,
        realized_precision=window.true_bear_alerts / window.true_alerts if window.true_alerts else None,
        sightings=window.true_sightings, caught=rep.caught, misses_found=len(rep.misses_found),
        misses_reported=len(rep.misses_reported), new_recall_pass=rep.recall.low >= t.min_recall_lower,
        new_pass=new_gate_passes(rep, t), old_recall=old_r, old_precision=old_p, old_pass=old_ok,
    )


def shadow_replicate(world: WorldSpec, t: Thresholds, site: SiteSpec, seed: int) -> Outcome:
    return evaluate(simulate_window(world, t, site, seed), t)


# --- the grid ---

RECALLS = (0.6, 0.75, 0.85, 0.9, 0.95, 0.99)
PRECISIONS = (0.3, 0.6, 0.95)
AUDITS = ((0.01, 0.05), (0.05, 0.2), (0.10, 0.3))  # (audit_rate, audit_near_rate)
MISS_REPORTS = (0.0, 0.3, 1.0)
VISIT_FRAMES = (1.0, 3.0, 8.0)
# Taguchi L9 orthogonal array: 4 three-level factors in 9 runs, every pair of levels of
# every two factors exactly once (precision, audit, miss report, visit frames).
L9 = ((0, 0, 0, 0), (0, 1, 1, 1), (0, 2, 2, 2), (1, 0, 1, 2), (1, 1, 2, 0),
      (1, 2, 0, 1), (2, 0, 2, 1), (2, 1, 0, 2), (2, 2, 1, 0))
STANDARD = SiteSpec()
BUSY = SiteSpec(cameras=6, days=28)  # with 0.1 visits per camera-hour: ~500 sightings


@dataclass(frozen=True)
class Cell:
    name: str
    world: WorldSpec
    thresholds: Thresholds
    site: SiteSpec = STANDARD
    weight: float = 1.0  # replicates relative to the standard count (busy sites cost more)

    def label(self) -> str:
        w, t = self.world, self.thresholds
        return (f"r={w.sighting_recall:g} p={w.alert_precision:g} audit={t.audit_rate:g}/{t.audit_near_rate:g} "
                f"rep={w.miss_report_rate:g} vis={w.visit_frames_mean:g}")


def thresholds_for(audit: tuple[float, float], **extra: float) -> Thresholds:
    return Thresholds(audit_rate=audit[0], audit_near_rate=audit[1], **extra)


def grid_cells() -> list[Cell]:
    """recall x L9(precision, audit, miss report, visit frames): 54 cells, default day/night."""
    cells = []
    for r in RECALLS:
        for p_i, a_i, m_i, v_i in L9:
            world = WorldSpec(sighting_recall=r, alert_precision=PRECISIONS[p_i], miss_report_rate=MISS_REPORTS[m_i],
                              visit_frames_mean=VISIT_FRAMES[v_i])
            cells.append(Cell("grid", world, thresholds_for(AUDITS[a_i])))
    return cells


def stress_cells() -> list[Cell]:
    """Corners the L9 grid does not hold: day/night mixes, far misses, the issue's site, busy sites."""
    cells = []
    for r in (0.6, 0.85, 0.99):
        cells.append(Cell("night-heavy", WorldSpec(sighting_recall=r, night_visit_factor=4.0, night_recall_factor=0.6),
                          thresholds_for(AUDITS[1], audit_night_rate=0.02)))
        cells.append(Cell("day-only-recall", WorldSpec(sighting_recall=r, night_visit_factor=0.5, night_recall_factor=1.0),
                          thresholds_for(AUDITS[1])))
    for r in (0.75, 0.85):
        cells.append(Cell("far-misses", WorldSpec(sighting_recall=r, alert_precision=0.3, miss_report_rate=0.0,
                                                  visit_frames_mean=1.0, miss_near_share=0.0), thresholds_for(AUDITS[0])))
    for rep in (0.1, 0.3):
        cells.append(Cell("issue-site", WorldSpec(sighting_recall=0.75, miss_report_rate=rep, night_recall_factor=1.0),
                          thresholds_for((0.05, 0.05)), SiteSpec(days=12)))
    for r in (0.85, 0.99):  # careless rangers: three times the default errors both ways
        cells.append(Cell("careless-rangers", WorldSpec(sighting_recall=r, alert_precision=0.95, ranger_miss=0.15,
                                                        ranger_false=0.006), thresholds_for(AUDITS[1])))
    for r, audit in ((0.85, AUDITS[2]), (0.99, AUDITS[0]), (0.99, AUDITS[1]), (0.99, AUDITS[2])):
        cells.append(Cell("busy", WorldSpec(sighting_recall=r, alert_precision=0.95, visit_rate_per_hour=0.1),
                          thresholds_for(audit), BUSY, weight=0.25))
    return cells


@dataclass
class CellResult:
    cell: Cell
    replicates: int
    recall_param: float
    precision_param: float
    long_run_recall: float
    outcomes: list[Outcome]

    def share(self, pred: Callable[[Outcome], bool]) -> float:
        return sum(pred(o) for o in self.outcomes) / len(self.outcomes)

    def covers(self, which: str, target: str) -> float:
        def ok(o: Outcome) -> bool:
            _, low, high = getattr(o, which)
            truth = {"recall": self.recall_param, "precision": self.precision_param}[which.removeprefix("old_")] \
                if target == "param" else (o.realized_recall if "recall" in which else o.realized_precision)
            return truth is None or low <= truth <= high
        return self.share(ok)

    def mean(self, f: Callable[[Outcome], float | None]) -> float:
        vals = [v for v in map(f, self.outcomes) if v is not None]
        return float(np.mean(vals)) if vals else math.nan


def run_cell(cell: Cell, replicates: int, seed: int, long_run_days: int = LONG_RUN_DAYS) -> CellResult:
    prec, lr_recall, _, _ = long_run(cell.world, cell.site.interval_s, cell.thresholds.alert_cooldown_s, long_run_days,
                                     episode_gap_s(cell.thresholds))
    seeds = np.random.SeedSequence([seed, stable_seed(cell)]).generate_state(replicates)
    outs = [shadow_replicate(cell.world, cell.thresholds, cell.site, int(s)) for s in seeds]
    return CellResult(cell, replicates, recall_parameter(cell.world), prec, lr_recall, outs)


def sightings_needed(m: float, threshold: float = 0.9, alpha: float = 0.05) -> int:
    """Caught sightings (and no design-found miss) for the recall lower bound to reach
    ``threshold`` at min_inclusion ``m`` (shadow.sightings.recall_estimate)."""
    lo, hi = 1, 2
    while recall_estimate(hi, [], m, alpha).low < threshold:
        lo, hi = hi, hi * 2
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if recall_estimate(mid, [], m, alpha).low >= threshold else (mid, hi)
    return hi


# --- repeated gate looks ---


@dataclass(frozen=True)
class LooksOutcome:
    new_day: int | None  # first day the new gate passed (None: never within the window)
    old_day: int | None
    new_precision_day: int | None  # first day the precision check alone passed
    old_precision_day: int | None
    fixed_precision_day: int | None  # alerts as the unit, but a fixed-level Wilson bound re-read daily


def matters(f: FrameObs) -> bool:
    """Frames that can change a SightingReport: flags (alerts) and unflagged frames said
    bear (sightings). Leaving the rest out gives the same report (tested)."""
    return f.flagged or f.truth is Truth.BEAR


def daily_looks(world: WorldSpec, t: Thresholds, site: SiteSpec, seed: int) -> LooksOutcome:
    """The gate re-evaluated at the end of every day from ``t.shadow_days`` on, on all the
    evidence so far; promotion at the first pass. Old: frame-level Wilson with its minimum
    counts (>= min_reviewed frames, >= OLD_MIN_BEARS bear frames)."""
    w = simulate_window(world, t, site, seed)
    obs = sorted((f for f in w.obs if matters(f)), key=lambda f: f.captured_at)
    reviewed = sorted(w.reviewed, key=lambda f: f.captured_at)
    days = int(site.days)
    tp = fp = fn = tn = dis = 0
    new_day = old_day = new_p = old_p = fixed_p = None
    j_obs = j_rev = 0
    for day in range(1, days + 1):
        end = BASE + timedelta(days=day)
        chunk = []
        while j_rev < len(reviewed) and reviewed[j_rev].captured_at < end:
            chunk.append(reviewed[j_rev])
            j_rev += 1
        while j_obs < len(obs) and obs[j_obs].captured_at < end:
            j_obs += 1
        c = agreement_of(chunk).confusion
        tp, fp, fn, tn, dis = tp + c.tp, fp + c.fp, fn + c.fn, tn + c.tn, dis + c.disputed
        if day < t.shadow_days:
            continue
        if new_day is None or new_p is None or fixed_p is None:
            rep = report_of(obs[:j_obs], t)
            if new_day is None and new_gate_passes(rep, t):
                new_day = day
            if new_p is None and rep.precision.low >= t.min_precision_lower:
                new_p = day
            fixed = wilson_rate(rep.bear_alerts, rep.reviewed_alerts)
            if fixed_p is None and fixed.ci is not None and fixed.ci.low >= t.min_precision_lower:
                fixed_p = day
        if old_day is None or old_p is None:
            ok, _, prec = old_gate_passes(Confusion(tp, fp, fn, tn, dis), day, t)
            if old_day is None and ok:
                old_day = day
            if old_p is None and prec[1] >= t.min_precision_lower and tp + fp + fn + tn >= t.min_reviewed:
                old_p = day
        if None not in (new_day, old_day, new_p, old_p, fixed_p):
            break
    return LooksOutcome(new_day, old_day, new_p, old_p, fixed_p)


# --- the guard ---


@dataclass(frozen=True)
class GuardCase:
    baseline_weeks: float
    cameras: int
    rate: float  # ranger-confirmed sightings per camera-hour in manual (the baseline)
    ratio: float  # the model's alert rate in expanded over the baseline rate
    bursty: bool = False  # alerts (and baseline sightings) come in clusters
    days: float = 60.0
    cluster_mean: float = 2.0  # events per cluster (geometric) when bursty: dispersion index 2 x mean - 1
    cluster_gap_min: float = 10.0  # mean minutes between events of one cluster

    def label(self) -> str:
        return f"{self.baseline_weeks:g} wk x {self.cameras} cam @ {self.rate:g}/cam-h" + (" bursty" if self.bursty else "")


@dataclass(frozen=True)
class GuardOutcome:
    baseline: int  # x0 (baseline events, one by one)
    alerts: int  # x1 over the whole stage
    new_hours: float | None  # the e-process on alerts one by one: hours into expanded of the first demotion
    old_hours: float | None  # the old hourly fixed-level test on alerts
    episode_hours: float | None = None  # the guard as it runs: the e-process on episodes (shadow.alert_rates)
    baseline_episodes: int = 0
    episodes: int = 0


def _event_hours(rng: np.random.Generator, rate_per_hour: float, hours: float, case: GuardCase) -> np.ndarray:
    """One camera's events (hours since the start), Poisson or in clusters."""
    if not case.bursty:
        k = rng.poisson(rate_per_hour * hours)
        return np.sort(rng.uniform(0.0, hours, k))
    clusters = rng.poisson(rate_per_hour * hours / case.cluster_mean)
    starts = rng.uniform(0.0, hours, clusters)
    sizes = rng.geometric(1.0 / case.cluster_mean, clusters)
    gaps = rng.exponential(case.cluster_gap_min / 60.0, int(sizes.sum()))
    first = np.concatenate(([0], np.cumsum(sizes)[:-1])).astype(int) if clusters else np.zeros(0, int)
    gaps[first] = 0.0  # each cluster's first event at its start
    within = np.cumsum(gaps)
    out = np.repeat(starts, sizes) + within - np.repeat(within[first], sizes) if clusters else np.zeros(0)
    return np.sort(out[out < hours])


def camera_events(rng: np.random.Generator, rate_per_camera_hour: float, hours: float, case: GuardCase
                  ) -> list[np.ndarray]:
    """Each camera's event hours, in time order."""
    return [_event_hours(rng, rate_per_camera_hour, hours, case) for _ in range(case.cameras)]


def episodes_of(per_camera: Sequence[np.ndarray], gap_s: float) -> np.ndarray:
    """The site's episode hours: an event at most ``gap_s`` after the previous one on its
    camera joins its episode (shadow.alert_rates.group_sightings, vectorized; tested equal)."""
    gap_h = gap_s / 3600.0
    kept = [ev[np.concatenate(([True], np.diff(ev) > gap_h))] for ev in per_camera if ev.size]
    return np.sort(np.concatenate(kept)) if kept else np.zeros(0)


def _screen_log_e(x1: np.ndarray, t1: np.ndarray, x0: int, t0: float, r0: float, *, up: bool) -> np.ndarray:
    """A vectorized copy of shadow.sequential.ratio_log_evalue, used only to skip looks
    that cannot alarm (every candidate is decided by the production function)."""
    thetas = np.asarray(GUARD_THETAS)
    r1 = r0 * thetas if up else r0 / thetas
    t1c = t1[:, None]
    terms = x1[:, None] * np.log(r1 / r0) - (x1 + x0)[:, None] * (np.log(t0 + r1 * t1c) - np.log(t0 + r0 * t1c))
    return logsumexp(terms, axis=1) - math.log(len(thetas))


def new_guard_looks(event_h: np.ndarray, hours: float, cams: int) -> list[tuple[int, float, str]]:
    """The looks at which the guard's e-process peaks, in time order: (alerts so far,
    hours, side). The up-side e-value only rises at an alert and falls between alerts,
    so it peaks just after each alert; the down-side one only rises between alerts, so
    it peaks just before each alert and at the end of the stage."""
    looks: list[tuple[int, float, str]] = []
    for k, h in enumerate(event_h.tolist()):
        looks.append((k, h, "down"))
        looks.append((k + 1, h, "up"))
    looks.append((len(event_h), hours, "down"))
    return looks


def new_guard_first_alarm(event_h: np.ndarray, hours: float, x0: int, t0: float, cams: int, t: Thresholds,
                          *, screen: bool = True, band: tuple[float, float] | None = None) -> float | None:
    """The first time the guard's e-process (``ratio_decision``, alpha = guard_significance)
    says "outside" when it looks every minute, read at the e-process's peaks
    (:func:`new_guard_looks`): at least as alarm-prone as minute looks, and at most a
    minute early. ``screen``: skip looks a vectorized copy of the formula puts below the
    alarm level (a 1e-6 margin for rounding; the result is the same, tested)."""
    low, high = band or (t.alert_ratio_low, t.alert_ratio_high)
    kw = dict(low=low, high=high, alpha=t.guard_significance)
    looks = new_guard_looks(event_h, hours, cams)
    if screen:
        x1 = np.array([x for x, _, _ in looks], float)
        t1 = cams * np.array([h for _, h, _ in looks])
        up = np.array([side == "up" for _, _, side in looks])
        level = math.log(2.0 / t.guard_significance) - 1e-6
        with np.errstate(divide="ignore"):
            e_up = _screen_log_e(x1, t1, x0, t0, high, up=True)
            e_down = _screen_log_e(x1, t1, x0, t0, low, up=False)
        keep = np.where(up, e_up, e_down) >= level
        keep |= t1 <= 0
        looks = [look for look, k in zip(looks, keep.tolist(), strict=True) if k]
    for x1_, h, side in looks:
        d = ratio_decision(x1_, cams * h, x0, t0, **kw)
        if d.up if side == "up" else d.down:
            return h
    return None


def old_guard_first_alarm(event_h: np.ndarray, hours: float, x0: int, t0: float, cams: int, t: Thresholds,
                          look_every_h: float = 1.0, *, screen: bool = True) -> float | None:
    """The first hourly look where the old ``rate_ratio_test(...).outside(alpha)`` says
    outside. The looks' binomial p-values are screened with a vectorized copy of the same
    formula (scipy's binomtest p-values are these binom.sf / cdf; a 1e-6 relative margin) and every candidate is decided by ``rate_ratio_test`` itself,
    in time order, so the result is that of calling it at every look."""
    looks = np.arange(look_every_h, hours + 1e-9, look_every_h)
    x1 = np.searchsorted(event_h, looks, side="right")
    t1 = cams * looks
    n = x1 + x0
    p_high = t.alert_ratio_high * t1 / (t.alert_ratio_high * t1 + t0)
    p_low = t.alert_ratio_low * t1 / (t.alert_ratio_low * t1 + t0)
    p_above = sps.binom.sf(x1 - 1, n, p_high)
    p_below = sps.binom.cdf(x1, n, p_low)
    cand = np.minimum(1.0, 2.0 * np.minimum(p_above, p_below)) < t.guard_significance * (1 + 1e-6)
    if not screen:
        cand = np.ones_like(cand)
    for i in np.flatnonzero(cand & (n > 0)).tolist():
        res = rate_ratio_test(int(x1[i]), float(t1[i]), x0, t0, low=t.alert_ratio_low, high=t.alert_ratio_high)
        if res.outside(t.guard_significance):
            return float(looks[i])
    return None


def guard_replicate(case: GuardCase, seed: int, t: Thresholds | None = None, *, old: bool = True,
                    screen: bool = True) -> GuardOutcome:
    t = t or Thresholds()
    rng = np.random.default_rng(seed)
    base_h = case.baseline_weeks * 7 * 24
    t0 = case.cameras * base_h
    base_cams = camera_events(rng, case.rate, base_h, case)
    hours = case.days * 24
    cams = camera_events(rng, case.ratio * case.rate, hours, case)
    base_ev, ev = np.sort(np.concatenate(base_cams)), np.sort(np.concatenate(cams))
    x0 = len(base_ev)
    new = new_guard_first_alarm(ev, hours, x0, t0, case.cameras, t, screen=screen)
    # the guard as it runs (shadow.alert_rates.baseline_of, compare_rates): the gap from the
    # baseline's busyness, episodes on both sides, the band moved to episodes
    gap = episode_gap_s(t, x0 / t0)
    base_ep, ep = episodes_of(base_cams, gap), episodes_of(cams, gap)
    band = episode_band(len(base_ep), t0, gap, t.alert_ratio_low, t.alert_ratio_high)
    episodes = new_guard_first_alarm(ep, hours, len(base_ep), t0, case.cameras, t, screen=screen, band=band)
    old_h = old_guard_first_alarm(ev, hours, x0, t0, case.cameras, t, screen=screen) if old else None
    return GuardOutcome(x0, len(ev), new, old_h, episodes, len(base_ep), len(ep))


def guard_runs(case: GuardCase, replicates: int, seed: int, *, old: bool = True) -> list[GuardOutcome]:
    seeds = np.random.SeedSequence([seed, stable_seed(case)]).generate_state(replicates)
    return [guard_replicate(case, int(s), old=old) for s in seeds]


# --- the report ---


def _f(x: float | None, nd: int = 3) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{nd}f}"


def _table(head: Sequence[str], rows: Iterable[Sequence[object]]) -> list[str]:
    out = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return out


EXPLANATION = """\
# Calibration of the rollout decisions

How it is measured. `bench/calibration.py` runs the simulated world
(`bearwatch/demo/world.py`: bears in multi-frame visits, more at night; a model that catches
a visit with the cell's sighting recall, less at night, and false alerts in bursts at the
rate that gives the cell's alert precision; rangers who err both ways, a second ranger on
10% of frames, the second-look queue (a lone verdict against the model gets a second
ranger, a disagreement a third: shadow.truth.needs_another_look), and rangers who report
a share of the misses on their own) and hands the evidence,
made the way the system collects it (every flagged frame reviewed; the stratified audit of
unflagged frames chosen by `shadow.audit_design.in_audit` on global frame ids, each with its
inclusion probability; reported misses kept but marked outside the design), to the
production functions: `shadow.sightings.sighting_report` for sighting recall and alert
precision with their 95% anytime-valid bounds, and `shadow.sequential.ratio_decision` for the
guard. The old methods run on the same data beside them: `shadow.agreement.agreement_of`
(frame-level counts with Wilson intervals, the old gate's minimum counts of 300 reviewed
frames and 20 bear frames) and `shadow.stats.rate_ratio_test(...).outside(0.05)` re-run at
every hourly look. The grid crosses six true recalls with a Taguchi L9 orthogonal array over
precision, audit rates, miss reporting and visit length (every pair of levels once; the full
factorial of 486 cells would leave too few replicates per cell), plus stress cells for
day/night mixes, far misses, the issue's example site and busy sites.

What the numbers mean. *Coverage* is the share of replicates whose 95% interval contains the
true value: the recall *parameter* (the visit-weighted day/night expectation of the model's
catch rate) and the precision parameter (the share of cooldown-grouped alerts holding a bear
over a 20-year run of the same world), and, second, the value realized in that replicate's
window. The goal is >= 0.94 in every cell; with R replicates a cell's figure has a Monte
Carlo standard error of about sqrt(0.05 x 0.95 / R), so a single low cell should be read
against it. *Wrong promotion* is the chance that the gate's statistical checks (recall lower
bound >= 0.90 and precision lower bound >= 0.50) pass although the true recall is below
0.90, once at the window's end or at any of the daily re-evaluations (goal <= 0.05);
*power* is the chance they pass for a good model. *False demotion* is the chance the guard
demotes a site whose true alert-rate ratio is inside [0.5, 2] at any look over 60 days of
expanded (goal <= 0.05); *time to demote* is counted from the start of expanded for ratios 3
and 1/3. Figures are measured, not asserted: a cell that misses its goal is printed as it is.
"""


@dataclass(frozen=True)
class Plan:
    grid_reps: int
    looks_reps: int
    guard_reps: int
    seed: int
    quick: bool
    long_run_days: int = LONG_RUN_DAYS


def section_grid(plan: Plan, lines: list[str], summary: list[str]) -> None:
    cells = grid_cells() + stress_cells()
    results = []
    for cell in cells:
        reps = max(4, int(round(plan.grid_reps * cell.weight)))
        results.append(run_cell(cell, reps, plan.seed, plan.long_run_days))
    n_std = sum(1 for r in results if r.cell.name == "grid")
    lines += ["", "## 1-2. Shadow window: coverage, wrong promotion, power", "",
              f"Grid: {n_std} cells (6 recalls x L9 fractional design over precision {PRECISIONS}, audit (rate, near rate) "
              f"{AUDITS}, miss report {MISS_REPORTS}, visit frames {VISIT_FRAMES}) + {len(results) - n_std} stress cells; "
              f"{plan.grid_reps} replicates per cell (busy sites {max(4, round(plan.grid_reps * 0.25))}). "
              f"Standard site: {STANDARD.label()}, 0.02 visits per camera-hour (1.5x at night), ~24 sightings per window; "
              f"busy: {BUSY.label()} at 0.1 visits per camera-hour. Stress sets: night-heavy (4x the visits at night, night "
              "recall 0.6 x the day's, night audit 2%), day-only-recall (half the visits at night, same recall day and "
              "night), far-misses (single-frame visits, every miss far below the threshold, none reported), issue-site "
              "(the issue's example: 12 days, flat 5% audit, recall 0.75 day and night), busy (precision 0.95, ~500 "
              "sightings). World defaults otherwise: precision 0.7, visits 3 frames, miss report 0.1, night recall 0.9 x, "
              "rangers err 5% / 0.2%, a second ranger on 10% of frames. Gate thresholds: recall lower bound >= "
              f"{Thresholds().min_recall_lower}, precision lower bound >= {Thresholds().min_precision_lower}.", ""]
    rows = []
    for r in results:
        rows.append((r.cell.name, r.cell.label(), r.replicates, _f(r.recall_param), _f(r.long_run_recall), _f(r.precision_param),
                     _f(r.mean(lambda o: o.sightings), 1), _f(r.mean(lambda o: o.caught), 1),
                     _f(r.mean(lambda o: o.misses_found), 2), _f(r.mean(lambda o: o.recall[0])),
                     _f(r.mean(lambda o: o.recall[1])), _f(r.mean(lambda o: o.recall[2])),
                     _f(r.covers("recall", "param")), _f(r.covers("recall", "real")),
                     _f(r.covers("precision", "param")), _f(r.covers("precision", "real")),
                     _f(r.share(lambda o: o.new_pass)),
                     _f(r.mean(lambda o: o.old_recall[0])), _f(r.covers("old_recall", "param")), _f(r.share(lambda o: o.old_pass))))
    lines += _table(("set", "cell", "reps", "recall param", "long-run", "prec param", "true sightings", "caught (est.)",
                     "misses found", "mean recall est.", "mean recall low", "mean recall high", "recall cov", "cov (realized)", "prec cov", "cov (realized)",
                     "P(pass)", "OLD frame recall", "OLD cov", "OLD P(pass)"), rows)

    def worst(which: str, k: int = 5) -> list[CellResult]:
        return sorted(results, key=lambda r: r.covers(which, "param"))[:k]

    lines += ["", "Worst cells (coverage of the 95% interval against the parameter; goal >= "
              f"{GOAL_COVERAGE}, Monte Carlo SE at 0.95 ~ {math.sqrt(0.05 * 0.95 / plan.grid_reps):.3f}):", ""]
    wrows = []
    for which in ("recall", "precision"):
        for r in worst(which):
            wrows.append((which, r.cell.name, r.cell.label(), r.replicates, _f(r.covers(which, "param")),
                          _f(r.covers(which, "real"))))
    for r in sorted(results, key=lambda r: r.covers("old_recall", "param"))[:3]:
        wrows.append(("OLD frame recall (Wilson)", r.cell.name, r.cell.label(), r.replicates,
                      _f(r.covers("old_recall", "param")), _f(r.covers("old_recall", "real"))))
    lines += _table(("interval", "set", "cell", "reps", "coverage (param)", "coverage (realized)"), wrows)
    # A cell below the goal by chance or by a flaw? Run it again, four times the replicates
    # on fresh seeds (Monte Carlo SE halves); both runs are printed.
    low_cells = [(which, r) for which in ("recall", "precision") for r in results
                 if r.covers(which, "param") < GOAL_COVERAGE]
    if low_cells:
        crows = []
        for which, r in low_cells:
            again = run_cell(r.cell, 4 * r.replicates, plan.seed + 1, plan.long_run_days)
            crows.append((which, r.cell.name, r.cell.label(), f"{r.replicates} / {again.replicates}",
                          _f(r.covers(which, "param")), _f(again.covers(which, "param")),
                          _f(math.sqrt(0.05 * 0.95 / again.replicates))))
            summary.append(f"{which} cell below the goal, rerun with {again.replicates} replicates on fresh seeds: "
                           f"{r.cell.name} {r.cell.label()}: {r.covers(which, 'param'):.3f} -> "
                           f"{again.covers(which, 'param'):.3f}")
        lines += ["", f"Cells below the goal, run again with four times the replicates on fresh seeds (seed {plan.seed + 1}):",
                  ""]
        lines += _table(("interval", "set", "cell", "reps", "coverage", "coverage, rerun", "Monte Carlo SE, rerun"), crows)
    lines += ["", "The worst cells again, same seeds, with error-free rangers (ranger_miss = ranger_false = 0: what the "
              "rangers' own errors cost, as the estimators take the rangers' verdicts as the truth) and without the "
              "second-look queue (every frame settled by its first ranger, as before shadow.truth.needs_another_look):",
              ""]
    drows = []
    diag: list[str] = []
    for which in ("recall", "precision"):
        w = worst(which, 1)[0]
        clean = run_cell(replace(w.cell, world=replace(w.cell.world, ranger_miss=0.0, ranger_false=0.0)),
                         w.replicates, plan.seed, plan.long_run_days)
        lone = run_cell(replace(w.cell, world=replace(w.cell.world, second_looks=False)), w.replicates, plan.seed,
                        plan.long_run_days)
        drows.append((which, w.cell.name, w.cell.label(), w.replicates, _f(w.covers(which, "param")),
                      _f(clean.covers(which, "param")), _f(lone.covers(which, "param")),
                      _f(w.mean(lambda o: o.misses_found), 2),
                      _f(clean.mean(lambda o: o.misses_found), 2), _f(w.mean(lambda o: o.precision[0])),
                      _f(clean.mean(lambda o: o.precision[0])), _f(w.precision_param)))
        diag.append(f"worst {which} cell with error-free rangers: coverage {clean.covers(which, 'param'):.3f}; "
                    f"without second looks {lone.covers(which, 'param'):.3f} (as run: {w.covers(which, 'param'):.3f})")
    lines += _table(("interval", "set", "cell", "reps", "coverage", "coverage, error-free rangers",
                     "coverage, no second looks", "misses found",
                     "misses found, error-free", "mean precision est.", "mean precision est., error-free",
                     "precision param"), drows)
    for which in ("recall", "precision"):
        w = worst(which, 1)[0]
        summary.append(f"worst coverage of the 95% {which} interval: {w.covers(which, 'param'):.3f} "
                       f"({w.cell.name}: {w.cell.label()}; {w.replicates} replicates; goal >= {GOAL_COVERAGE})")
    w = min(results, key=lambda r: r.covers("old_recall", "param"))
    summary.extend(diag)
    summary.append(f"OLD frame-level Wilson recall interval, worst coverage {w.covers('old_recall', 'param'):.3f}, "
                   f"pooled {np.mean([r.covers('old_recall', 'param') for r in results]):.3f}")

    low = [r for r in results if r.recall_param < Thresholds().min_recall_lower]
    pooled_new = sum(sum(o.new_pass for o in r.outcomes) for r in low) / sum(r.replicates for r in low)
    pooled_old = sum(sum(o.old_pass for o in r.outcomes) for r in low) / sum(r.replicates for r in low)
    pooled_new_rc = sum(sum(o.new_recall_pass for o in r.outcomes) for r in low) / sum(r.replicates for r in low)
    worst_new = max(low, key=lambda r: r.share(lambda o: o.new_pass))
    worst_old = max(low, key=lambda r: r.share(lambda o: o.old_pass))
    lines += ["", f"Wrong promotion, P(gate passes | true recall < {Thresholds().min_recall_lower}) over {len(low)} cells "
              f"(goal <= {GOAL_ERROR}):", ""]
    lines += _table(("method", "pooled", "worst cell", "worst cell's rate", "recall check alone (pooled)"), [
        ("new (sightings, anytime-valid)", _f(pooled_new), worst_new.cell.label(), _f(worst_new.share(lambda o: o.new_pass)),
         _f(pooled_new_rc)),
        ("OLD (frames, Wilson, min counts)", _f(pooled_old), worst_old.cell.label(), _f(worst_old.share(lambda o: o.old_pass)),
         _f(sum(sum(o.old_recall[1] >= 0.9 for o in r.outcomes) for r in low) / sum(r.replicates for r in low))),
    ])
    summary.append(f"wrong promotion at one look (true recall < 0.9): new {pooled_new:.3f} pooled, worst cell "
                   f"{worst_new.share(lambda o: o.new_pass):.3f}; OLD {pooled_old:.3f} pooled, worst cell "
                   f"{worst_old.share(lambda o: o.old_pass):.3f}")
    lines += ["", "Power, P(pass | recall 0.99, precision 0.95), by audit level; and the caught sightings with no "
              "design-found miss the recall lower bound needs to reach 0.90 at that audit's min_inclusion "
              "(shadow.sightings.recall_estimate):", ""]
    prow = []
    for a in AUDITS:
        t = thresholds_for(a)
        m = min_inclusion(t)
        for r in results:
            if r.cell.world.sighting_recall == 0.99 and r.cell.world.alert_precision == 0.95 \
                    and (r.cell.thresholds.audit_rate, r.cell.thresholds.audit_near_rate) == a:
                prow.append((f"{a[0]:g} / {a[1]:g}", r.cell.name, r.cell.label(), r.cell.site.label(),
                             _f(r.mean(lambda o: o.sightings), 0), _f(r.share(lambda o: o.new_pass)),
                             _f(r.share(lambda o: o.old_pass)), f"{m:g}", sightings_needed(m)))
    lines += _table(("audit", "set", "cell", "site", "sightings", "P(pass) new", "P(pass) OLD", "min_inclusion",
                     "sightings needed"), prow)
    summary.append("power P(pass | recall 0.99, precision 0.95): "
                   + "; ".join(f"audit {row[0]}, {row[4]} sightings: new {row[5]}, OLD {row[6]}" for row in prow)
                   + "; caught sightings needed with no design-found miss, by min_inclusion: "
                   + ", ".join(f"{m:g} -> {sightings_needed(m)}" for m in sorted({min_inclusion(thresholds_for(a)) for a in AUDITS})))


def section_looks(plan: Plan, lines: list[str], summary: list[str]) -> None:
    cases = [
        ("recall 0.85 (prec 0.95), standard site", WorldSpec(sighting_recall=0.85, alert_precision=0.95),
         thresholds_for(AUDITS[1]), replace(STANDARD, days=60)),
        ("recall 0.85 (prec 0.95), busy site", WorldSpec(sighting_recall=0.85, alert_precision=0.95, visit_rate_per_hour=0.1),
         thresholds_for(AUDITS[2]), replace(BUSY, days=60)),
        ("precision < 0.5 (recall 0.99), busy site", WorldSpec(sighting_recall=0.99, alert_precision=0.4, visit_rate_per_hour=0.1,
                                                            miss_report_rate=0.3), thresholds_for(AUDITS[1]), replace(BUSY, days=60)),
    ]
    lines += ["", "## 3. The gate re-evaluated daily for 60 days (promote at the first pass)", "",
              f"Each day from day {Thresholds().shadow_days:g} the gate reads all the evidence so far. "
              "New: sighting recall and alert precision lower bounds (confidence sequences). OLD: frame-level Wilson "
              "lower bounds with >= 300 reviewed and >= 20 bear frames. The last row is the precision check alone "
              "(lower bound >= 0.5) for a model whose alert precision is below 0.5; its middle column keeps the new unit "
              "(alerts) but reads a fixed-level Wilson bound every day (the peeking the confidence sequence prevents).", ""]
    rows = []
    for name, world, t, site in cases:
        reps = max(4, plan.looks_reps if site.cameras <= 3 else plan.looks_reps // 3)
        seeds = np.random.SeedSequence([plan.seed, 3, len(rows)]).generate_state(reps)
        outs = [daily_looks(world, t, site, int(s)) for s in seeds]
        prec, lr, _, _ = long_run(world, site.interval_s, t.alert_cooldown_s, plan.long_run_days, episode_gap_s(t))
        if "precision" in name:
            new = sum(o.new_precision_day is not None for o in outs) / reps
            old = sum(o.old_precision_day is not None for o in outs) / reps
            fixed = _f(sum(o.fixed_precision_day is not None for o in outs) / reps)
            what = f"P(precision check ever passes), true alert precision {prec:.3f}"
        else:
            new = sum(o.new_day is not None for o in outs) / reps
            old = sum(o.old_day is not None for o in outs) / reps
            fixed = "-"
            what = f"P(ever promoted), true recall {recall_parameter(world):.3f}"
        days = [o.old_day for o in outs if o.old_day is not None] if "precision" not in name else \
            [o.old_precision_day for o in outs if o.old_precision_day is not None]
        rows.append((name, site.label(), reps, what, _f(new), fixed, _f(old), _f(float(np.median(days)), 0) if days else "-"))
        summary.append(f"daily gate looks over 60 days, {name}: {what} new {new:.3f}, OLD {old:.3f}"
                       + (f", alerts + fixed-level Wilson {fixed}" if fixed != "-" else ""))
    lines += _table(("case", "site", "reps", "what", "new", "alerts + fixed-level Wilson, daily", "OLD",
                     "OLD median day of wrong pass"), rows)


GUARD_BASELINES = ((1, 2, 0.02), (1, 4, 0.02), (3, 2, 0.02), (3, 4, 0.02), (3, 4, 0.2))
FALSE_RATIOS = (0.5, 0.7, 1.0, 1.4, 1.8, 2.0)
DETECT_RATIOS = (3.0, 1 / 3)


GUARD_METHODS = (("guard (episodes)", "episode_hours"), ("e-process, alerts one by one", "new_hours"),
                 ("OLD hourly", "old_hours"))


def section_guard(plan: Plan, lines: list[str], summary: list[str]) -> None:
    case0 = GuardCase(1, 1, 1, 1)
    lines += ["", "## 4. The guard over 60 days of expanded", "",
              f"Baseline: confirmed sightings of a manual period (weeks x cameras at the rate shown); then the model's alerts "
              f"arrive at ratio R x the baseline rate on each camera, as a Poisson process or bursty (clusters of geometric "
              f"size, mean {case0.cluster_mean:g}, ~{case0.cluster_gap_min:g} min apart, more than the cooldown: separate "
              f"alerts; counts overdispersed, variance/mean = {2 * case0.cluster_mean - 1:g}; the baseline clustered alike). "
              "Methods: *guard (episodes)* is the guard as it runs: `ratio_decision` (alpha 0.05) on episodes (events on one "
              f"camera less than the gap apart count once, on both sides: guard_episode_gap_s = "
              f"{Thresholds().guard_episode_gap_s / 60:.0f} min, shorter on busy cameras, the band moved to episodes; "
              "shadow.episodes), looked at every minute, evaluated at the e-process's peaks (the up side just after "
              "each event, the down side just before each event and at the end: it only falls between those). "
              "*e-process, alerts one by one*: the same on single alerts (the previous guard). OLD: "
              "`rate_ratio_test(...).outside(0.05)` on alerts at every hourly look. "
              f"{plan.guard_reps} replicates per row.", "",
              "False demotion probability (true ratio inside [0.5, 2]; goal <= 0.05):", ""]
    head = ["baseline", "method"] + [f"R={r:g}" for r in FALSE_RATIOS]
    rows = []
    detect_rows = []
    worst: dict[tuple[str, bool], float] = {}
    for bursty in (False, True):
        for weeks, cams, rate in GUARD_BASELINES:
            per_r: dict[str, list[float]] = {m: [] for m, _ in GUARD_METHODS}
            for r in FALSE_RATIOS:
                outs = guard_runs(GuardCase(weeks, cams, rate, r, bursty), plan.guard_reps, plan.seed)
                for method, attr in GUARD_METHODS:
                    per_r[method].append(sum(getattr(o, attr) is not None for o in outs) / len(outs))
            label = GuardCase(weeks, cams, rate, 1.0, bursty).label()
            for method, _ in GUARD_METHODS:
                worst[(method, bursty)] = max(worst.get((method, bursty), 0.0), *per_r[method])
                rows.append((label, method, *map(_f, per_r[method])))
            for r in DETECT_RATIOS:
                outs = guard_runs(GuardCase(weeks, cams, rate, r, bursty), plan.guard_reps, plan.seed)
                for method, attr in GUARD_METHODS:
                    hrs = [getattr(o, attr) for o in outs]
                    hit = [h for h in hrs if h is not None]
                    # median over all replicates, never-demoted counted as beyond 60 days
                    med = float(np.median([h if h is not None else math.inf for h in hrs])) / 24
                    detect_rows.append((label, f"{r:.3g}", method, "> 60" if math.isinf(med) else _f(med, 2),
                                        _f(len(hit) / len(hrs))))
                    if method == GUARD_METHODS[0][0]:
                        summary.append(f"guard time to demote at R={r:.3g}, {label}: median "
                                       f"{'> 60' if math.isinf(med) else f'{med:.2f}'} days, demoted within 60 d "
                                       f"{len(hit) / len(hrs):.3f}")
    lines += _table(head, rows)
    for bursty in (False, True):
        summary.append(f"false demotion over 60 days, R in [0.5, 2], {'bursty' if bursty else 'Poisson'} alerts: "
                       + ", ".join(f"{m} worst {worst[(m, bursty)]:.3f}" for m, _ in GUARD_METHODS))
    lines += ["", "Worst false-demotion probability: " + "; ".join(
        f"{m} {worst[(m, False)]:.3f} with Poisson alerts, {worst[(m, True)]:.3f} bursty" for m, _ in GUARD_METHODS)
        + f" (SE ~ {math.sqrt(0.05 * 0.95 / plan.guard_reps):.3f} at 0.05).", "",
        "Time to demote (days into expanded; median over replicates, a site never demoted counts as beyond 60):", ""]
    lines += _table(("baseline", "R", "method", "median days", "share demoted in 60 d"), detect_rows)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="a few replicates per cell (smoke run)")
    ap.add_argument("--grid-reps", type=int, default=None, help="replicates per grid cell (default 100; quick 4)")
    ap.add_argument("--looks-reps", type=int, default=None, help="replicates for the daily looks (default 120; quick 4)")
    ap.add_argument("--guard-reps", type=int, default=None, help="replicates per guard row (default 500; quick 20)")
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--out", type=Path, default=None, help="also write the markdown here")
    ap.add_argument("--sections", default="grid,looks,guard",
                    help="comma-separated subset of grid, looks, guard (a partial run is not the published table)")
    args = ap.parse_args(argv)
    plan = Plan(
        grid_reps=args.grid_reps or (4 if args.quick else 100),
        looks_reps=args.looks_reps or (4 if args.quick else 120),
        guard_reps=args.guard_reps or (20 if args.quick else 500),
        seed=args.seed, quick=args.quick, long_run_days=365 if args.quick else LONG_RUN_DAYS,
    )
    cpu0, wall0 = time.process_time(), time.perf_counter()
    lines = [EXPLANATION.rstrip(), "", "## Run", "",
             f"- machine: {platform.platform()}, {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
             f"- load average at start: {', '.join(f'{x:.2f}' for x in os.getloadavg())}",
             f"- seed {plan.seed}; replicates: grid {plan.grid_reps} per cell, daily looks {plan.looks_reps} "
             f"(busy sites a third), guard {plan.guard_reps} per row{' (--quick: smoke only, too few to read)' if plan.quick else ''}",
             "- one process, numpy + the production functions; no timing asserted"]
    summary: list[str] = []
    wanted = set(args.sections.split(","))
    print("\n".join(lines), flush=True)
    for name, section in (("grid", section_grid), ("looks", section_looks), ("guard", section_guard)):
        if name in wanted:
            mark = len(lines)
            section(plan, lines, summary)
            print("\n".join(lines[mark:]), flush=True)
    mark = len(lines)
    lines += ["", "## Headlines", ""] + [f"- {x}" for x in summary]
    lines += ["", f"CPU time {time.process_time() - cpu0:.0f} s (wall {time.perf_counter() - wall0:.0f} s); "
              f"load average at the end: {', '.join(f'{x:.2f}' for x in os.getloadavg())}."]
    print("\n".join(lines[mark:]), flush=True)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
