"""The pure halves of issue 11: sightings from flags and verdicts, their recall and
precision, and the anytime-valid bounds and e-process, table by table and against
brute force."""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest
from scipy import integrate

from shadow.sequential import (
    events_to_reach,
    log_evalue_above,
    proportion_bounds,
    ratio_bounds,
    ratio_decision,
)
from shadow.sightings import FrameObs, sighting_report
from shadow.truth import Truth

T0 = datetime(2026, 5, 1, tzinfo=timezone.utc)
B, N = Truth.BEAR, Truth.NOT_BEAR


def obs(i: int, minute: float, *, flagged: bool = False, truth: Truth | None = None, design: bool = True,
        pi: float = 0.1, camera: int = 1) -> FrameObs:
    return FrameObs(i, camera, T0 + timedelta(minutes=minute), flagged, truth, design or flagged, 1.0 if flagged else pi)


def test_flags_group_into_alerts_and_bears_into_sightings() -> None:
    frames = [
        obs(1, 0, flagged=True, truth=B), obs(2, 4, flagged=True), obs(3, 8, truth=B),  # one caught sighting
        obs(4, 60, flagged=True, truth=N),  # a false alert
        obs(5, 120, truth=B, pi=0.1), obs(6, 124, truth=B, pi=0.2, design=False),  # a miss the audit found
        obs(7, 300, truth=B, design=False),  # a miss only reported
        obs(8, 400, flagged=True, truth=N), obs(9, 403, truth=B),  # the ranger dismissed the flag, a bear was there
        obs(10, 0, flagged=True, camera=2),  # not reviewed yet, other camera
    ]
    rep = sighting_report(frames, cooldown_s=300, min_inclusion=0.1)
    assert len(rep.alerts) == 4 and (rep.bear_alerts, rep.false_alerts, rep.unreviewed_alerts) == (1, 2, 1)
    assert rep.caught == 2  # the first visit, and the one whose flag a ranger dismissed
    assert [m.first_frame_id for m in rep.misses_found] == [5] and [m.first_frame_id for m in rep.misses_reported] == [7]
    found = rep.misses_found[0]
    assert found.bear_frames == 2 and found.inclusion == pytest.approx(1 - 0.9 * 0.8)  # its two known frames
    assert rep.recall.value == pytest.approx(2 / (2 + 1 / 0.28))  # Horvitz-Thompson: the found miss stands for 1/pi
    assert rep.recall_ceiling == pytest.approx(2 / 4)
    assert rep.precision.successes == 1 and rep.precision.n == 3


def test_frames_further_apart_than_the_cooldown_are_separate_sightings() -> None:
    rep = sighting_report([obs(1, 0, truth=B), obs(2, 6, truth=B)], cooldown_s=300, min_inclusion=0.1)
    assert len(rep.misses_found) == 2
    joined = sighting_report([obs(1, 0, truth=B), obs(2, 5, truth=B)], cooldown_s=300, min_inclusion=0.1)
    assert len(joined.misses_found) == 1


def test_one_visit_with_unreviewed_frames_between_its_flags_is_one_caught_sighting() -> None:
    """A bear stays 40 minutes; the model flags it at minutes 0, 20 and 40 and the frames
    between are never reviewed. Grouped by the 5-minute cooldown it would be three caught
    sightings (recall reads high); grouped by the episode gap it is the one visit it was.
    A second visit an hour and a half later, missed and found by the audit, stays apart."""
    frames = [obs(1, 0, flagged=True, truth=B), obs(2, 20, flagged=True, truth=B), obs(3, 40, flagged=True, truth=B),
              obs(4, 130, truth=B, pi=0.5)]
    by_cooldown = sighting_report(frames, cooldown_s=300, min_inclusion=0.5)
    by_visit = sighting_report(frames, cooldown_s=300, min_inclusion=0.5, gap_s=3600)
    assert (by_cooldown.caught, len(by_cooldown.alerts)) == (3, 3)
    assert (by_visit.caught, len(by_visit.misses_found), len(by_visit.alerts)) == (1, 1, 3)  # alerts stay by the cooldown
    assert by_visit.recall.value == pytest.approx(1 / (1 + 1 / 0.5))


def _lower_by_integration(x: int, n: int, p0: float) -> float:
    """log e-value by numerical integration of the uniform mixture over (p0, 1)."""
    num, _ = integrate.quad(lambda t: t**x * (1 - t) ** (n - x), p0, 1.0, epsabs=0, epsrel=1e-10)
    return math.log(num / (1 - p0)) - x * math.log(p0) - (n - x) * math.log1p(-p0)


@pytest.mark.parametrize(("x", "n", "p0"), [(9, 10, 0.5), (45, 50, 0.8), (20, 20, 0.9), (3, 30, 0.2)])
def test_the_mixture_e_value_matches_its_integral(x: int, n: int, p0: float) -> None:
    assert log_evalue_above(x, n, p0) == pytest.approx(_lower_by_integration(x, n, p0), rel=1e-6)


def test_bounds_are_wider_than_a_fixed_sample_interval_and_hold_under_every_look() -> None:
    from scipy import stats

    b = proportion_bounds(45, 50)
    cp = stats.binomtest(45, 50).proportion_ci(method="exact")
    assert b.low < cp.low and b.high > cp.high
    rng = np.random.default_rng(5)
    misses = 0
    for _ in range(100):  # looking every 5 trials, 300 trials
        xs = np.cumsum(rng.random(300) < 0.9)
        misses += any(not (proportion_bounds(int(xs[k - 1]), k).low <= 0.9) for k in range(5, 301, 5))
    assert misses / 100 <= 0.05  # the lower side alone, at every look


def test_events_to_reach_is_the_least_census_that_passes() -> None:
    n = events_to_reach(0, 0, 0.9)
    assert n is not None and proportion_bounds(n, n).low >= 0.9 > proportion_bounds(n - 1, n - 1).low
    assert events_to_reach(50, 100, 0.9) is None  # at a share of 0.5 nothing shows 0.9


def test_the_guard_e_process_demotes_on_strong_evidence_only() -> None:
    same = ratio_decision(100, 100.0, 100, 100.0, low=0.5, high=2.0, alpha=0.05)
    assert not same.outside and same.level == 40.0
    assert ratio_decision(400, 100.0, 100, 100.0, low=0.5, high=2.0, alpha=0.05).up
    assert ratio_decision(10, 100.0, 100, 100.0, low=0.5, high=2.0, alpha=0.05).down
    assert not ratio_decision(230, 100.0, 100, 100.0, low=0.5, high=2.0, alpha=0.05).outside  # 2.3x on these counts
    assert not ratio_decision(6, 10.0, 1, 10.0, low=0.5, high=2.0, alpha=0.05).outside  # 6x on tiny counts


def test_ratio_bounds_contain_the_estimate() -> None:
    b = ratio_bounds(40, 100.0, 20, 50.0)
    assert b.low < 1.0 < b.high
    assert ratio_bounds(0, 10.0, 0, 10.0).high == math.inf


def test_truth_is_settled_by_agreement_or_by_a_majority_of_three() -> None:
    from bearwatch.schema import Verdict
    from shadow.truth import Truth, needs_another_look, truth_of

    c, d, m = Verdict.CONFIRM, Verdict.DISMISS, Verdict.MISSED

    def v(*verdicts: Verdict) -> list[tuple[int, Verdict]]:
        return list(enumerate(verdicts))

    assert truth_of(v(c)) is Truth.BEAR and truth_of(v(d, d)) is Truth.NOT_BEAR
    assert truth_of(v(c, d)) is Truth.DISPUTED
    assert truth_of(v(m, d, m)) is Truth.BEAR and truth_of(v(c, d, d)) is Truth.NOT_BEAR
    assert truth_of(v(c, d, c, d)) is Truth.DISPUTED
    # a lone verdict against the model, or a disagreement, needs another ranger
    assert needs_another_look(True, v(d)) and needs_another_look(False, v(m))
    assert not needs_another_look(True, v(c)) and not needs_another_look(False, v(d))
    assert needs_another_look(True, v(d, c)) and not needs_another_look(False, v(m, m))
    assert not needs_another_look(False, v(m, d, d))
