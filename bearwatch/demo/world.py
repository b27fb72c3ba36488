"""The simulated world behind the demo history, the scenario tests and the calibration
bench: bear visits, what the model flags and scores, and what the rangers see and say.
Pure numpy, frame by frame, so the database simulator (bearwatch.demo.simulate) writes
it and bench/calibration.py feeds it straight to the production statistics.

Realistic, not kind, by default:
- bears come in *visits* that span several frames (geometric length), more at night;
- the model catches a visit (flags at least one of its frames) with ``sighting_recall``
  (lower at night by ``night_recall_factor``); inside a caught visit each other frame is
  flagged with ``frame_hit_rate``; a missed visit's scores sit just below the threshold
  for a share ``miss_near_share`` of misses and far below it otherwise (a confident miss:
  a bear from behind, far away, in IR);
- false alerts come in bursts (a swaying branch flags a few frames in a row), at the
  rate that makes the alert precision ``alert_precision``;
- rangers err both ways (``ranger_miss``: a bear called empty; ``ranger_false``: an empty
  frame called a bear), a share of frames gets a second ranger, and they report only a
  share ``miss_report_rate`` of the misses they were not asked about.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

NIGHT_HOURS = (20, 6)  # night from 20:00 to 06:00 UTC


@dataclass(frozen=True)
class WorldSpec:
    seed: int = 0
    visit_rate_per_hour: float = 0.02  # bear visits starting per camera-hour (day)
    night_visit_factor: float = 1.5  # visits are this much more frequent at night
    visit_frames_mean: float = 3.0  # frames a visit spans (geometric, >= 1)
    sighting_recall: float = 0.9  # share of visits the model flags at least once
    night_recall_factor: float = 0.9  # night recall = sighting_recall * this
    frame_hit_rate: float = 0.6  # inside a caught visit, each other frame flagged
    miss_near_share: float = 0.5  # missed visits scored just below the threshold
    alert_precision: float = 0.7  # share of the model's alerts that are bears
    false_burst_mean: float = 1.5  # frames a false alert spans (geometric, >= 1)
    empty_near_share: float = 0.03  # empty frames scored just below the threshold
    ranger_miss: float = 0.05  # a ranger calls a bear frame empty
    ranger_false: float = 0.002  # a ranger calls an empty frame a bear
    second_review_rate: float = 0.1
    second_looks: bool = True  # the second-look queue: lone verdicts against the model and disagreements get more rangers
    miss_report_rate: float = 0.1  # missed visits a ranger reports on their own
    alert_multiplier: float = 1.0  # extra false alerts: the model alerts this much more often
    threshold: float = 0.5


def is_night_hour(hours: np.ndarray) -> np.ndarray:
    return (hours >= NIGHT_HOURS[0]) | (hours < NIGHT_HOURS[1])


@dataclass(frozen=True)
class CameraFrames:
    """One camera's frames, index-aligned arrays."""

    t_s: np.ndarray  # seconds since the start of the world
    night: np.ndarray
    bear: np.ndarray
    visit: np.ndarray  # visit id per frame, -1 for empty frames
    flagged: np.ndarray
    score: np.ndarray
    reported: np.ndarray  # a ranger reports this frame as a missed bear on their own


def _geometric(rng: np.random.Generator, mean: float, size: int) -> np.ndarray:
    return rng.geometric(1.0 / max(1.0, mean), size)


def camera_frames(spec: WorldSpec, rng: np.random.Generator, n: int, interval_s: float, start_hour: float = 0.0,
                  multiplier_from: int | None = None) -> CameraFrames:
    """``n`` frames every ``interval_s`` seconds; ``multiplier_from``: the frame index from
    which ``alert_multiplier`` applies."""
    t = np.arange(n) * interval_s
    hours = np.floor((start_hour + t / 3600.0) % 24)
    night = is_night_hour(hours)
    per_frame = spec.visit_rate_per_hour * interval_s / 3600.0 * np.where(night, spec.night_visit_factor, 1.0)
    starts = np.flatnonzero(rng.random(n) < np.minimum(per_frame, 1.0))
    bear = np.zeros(n, bool)
    visit = np.full(n, -1)
    flagged = np.zeros(n, bool)
    score = np.empty(n)
    thr = spec.threshold
    lengths = _geometric(rng, spec.visit_frames_mean, len(starts))
    recall = np.where(night[starts], spec.sighting_recall * spec.night_recall_factor, spec.sighting_recall)
    caught = rng.random(len(starts)) < recall
    near_miss = rng.random(len(starts)) < spec.miss_near_share
    reported_visit = rng.random(len(starts)) < spec.miss_report_rate
    reported = np.zeros(n, bool)
    for k, (s, length) in enumerate(zip(starts, lengths, strict=True)):
        idx = np.arange(s, min(n, s + length))
        idx = idx[visit[idx] < 0]
        if idx.size == 0:
            continue
        bear[idx] = True
        visit[idx] = k
        if caught[k]:
            hits = rng.random(idx.size) < spec.frame_hit_rate
            hits[rng.integers(idx.size)] = True
            flagged[idx] = hits
            score[idx] = np.where(hits, rng.uniform(thr, 1.0, idx.size), rng.uniform(0.5 * thr, thr, idx.size))
        else:
            score[idx] = (rng.uniform(0.5 * thr, thr, idx.size) if near_miss[k]
                          else rng.uniform(0.0, 0.5 * thr, idx.size))
            if reported_visit[k]:
                reported[idx[rng.integers(idx.size)]] = True
    empty = ~bear
    score[empty] = np.where(rng.random(int(empty.sum())) < spec.empty_near_share,
                            rng.uniform(0.5 * thr, thr, int(empty.sum())), rng.beta(1.0, 12.0, int(empty.sum())) * 0.5 * thr)
    # False alerts: bursts at the rate that gives alert_precision, on empty frames.
    true_alert_rate = float(np.mean(per_frame)) * spec.sighting_recall
    false_per_frame = true_alert_rate * (1.0 - spec.alert_precision) / max(spec.alert_precision, 1e-9)
    rate = np.full(n, false_per_frame)
    if multiplier_from is not None and spec.alert_multiplier != 1.0:
        extra = (spec.alert_multiplier - 1.0) * (true_alert_rate + false_per_frame)
        rate[multiplier_from:] = max(0.0, false_per_frame + extra)
    for s in np.flatnonzero(rng.random(n) < np.minimum(rate, 1.0)):
        idx = np.arange(s, min(n, int(s) + int(_geometric(rng, spec.false_burst_mean, 1)[0])))
        idx = idx[~bear[idx]]
        flagged[idx] = True
        score[idx] = rng.uniform(thr, 1.0, idx.size)
    return CameraFrames(t, night, bear, visit, flagged, score, reported)


def ranger_says_bear(spec: WorldSpec, rng: np.random.Generator, bear: np.ndarray) -> np.ndarray:
    """One ranger's reading of frames (errs both ways)."""
    u = rng.random(bear.shape)
    return np.where(bear, u >= spec.ranger_miss, u < spec.ranger_false)
