"""shadow.stats against numbers computed by hand (closed formulas, binomial sums) and sklearn."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from shadow.stats import cohen_kappa, ks_compare, mmd_test, rate_ratio_test, share_compare, wilson_interval


def _wilson_by_hand(k: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return centre - half, centre + half


@pytest.mark.parametrize(
    ("k", "n", "low", "high"),
    [
        (8, 10, 0.4902, 0.9433),  # textbook example
        (0, 10, 0.0, 0.2775),
        (10, 10, 0.7225, 1.0),
        (300, 300, 0.9874, 1.0),
        (19, 20, 0.7639, 0.9911),
    ],
)
def test_wilson_interval_matches_the_closed_formula(k: int, n: int, low: float, high: float) -> None:
    ci = wilson_interval(k, n)
    assert ci is not None
    assert ci.low == pytest.approx(low, abs=1e-4)
    assert ci.high == pytest.approx(high, abs=1e-4)
    hand = _wilson_by_hand(k, n)
    assert (ci.low, ci.high) == pytest.approx(hand, abs=1e-9)


def test_wilson_interval_of_nothing_is_none_and_bad_counts_raise() -> None:
    assert wilson_interval(0, 0) is None
    with pytest.raises(ValueError):
        wilson_interval(5, 4)


def _upper_tail(k: int, n: int, p: float) -> float:
    return sum(math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(k, n + 1))


def _lower_tail(k: int, n: int, p: float) -> float:
    return sum(math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(0, k + 1))


@pytest.mark.parametrize(
    ("x1", "t1", "x0", "t0"),
    [(20, 10.0, 10, 10.0), (40, 10.0, 10, 10.0), (3, 5.0, 30, 10.0), (12, 24.0, 50, 100.0), (0, 8.0, 9, 10.0)],
)
def test_rate_ratio_p_values_are_binomial_tail_sums(x1: int, t1: float, x0: int, t0: float) -> None:
    r = rate_ratio_test(x1, t1, x0, t0, low=0.5, high=2.0)
    n = x1 + x0
    p_high = 2.0 * t1 / (2.0 * t1 + t0)
    p_low = 0.5 * t1 / (0.5 * t1 + t0)
    assert r.ratio == pytest.approx((x1 / t1) / (x0 / t0))
    assert r.p_above == pytest.approx(min(1.0, _upper_tail(x1, n, p_high)), rel=1e-9)
    assert r.p_below == pytest.approx(min(1.0, _lower_tail(x1, n, p_low)), rel=1e-9)
    assert r.p_outside == pytest.approx(min(1.0, 2 * min(r.p_above, r.p_below)))
    # Clopper-Pearson bounds through the beta quantiles, mapped back to a ratio.
    lo_p = sps.beta.ppf(0.025, x1, n - x1 + 1) if x1 > 0 else 0.0
    hi_p = sps.beta.ppf(0.975, x1 + 1, n - x1)
    assert r.ci.low == pytest.approx(lo_p / (1 - lo_p) * t0 / t1, rel=1e-6)
    assert r.ci.high == pytest.approx(hi_p / (1 - hi_p) * t0 / t1, rel=1e-6)
    assert r.ci.low <= r.ratio <= r.ci.high


def test_rate_ratio_flags_a_doubling_only_when_the_evidence_is_strong() -> None:
    same = rate_ratio_test(50, 100.0, 50, 100.0)
    assert same.ratio == 1.0 and not same.outside(0.05)
    quadrupled = rate_ratio_test(80, 100.0, 20, 100.0)
    assert quadrupled.outside(0.05) and quadrupled.direction == "up"
    collapsed = rate_ratio_test(2, 100.0, 40, 100.0)
    assert collapsed.outside(0.05) and collapsed.direction == "down"
    # Exactly 2x on small counts: the point estimate is at the edge, not significant.
    edge = rate_ratio_test(4, 10.0, 2, 10.0)
    assert edge.ratio == 2.0 and not edge.outside(0.05)


def test_rate_ratio_edge_cases() -> None:
    none = rate_ratio_test(0, 10.0, 0, 10.0)
    assert math.isnan(none.ratio) and none.p_outside == 1.0
    no_baseline_events = rate_ratio_test(5, 10.0, 0, 10.0)
    assert no_baseline_events.ratio == math.inf
    assert no_baseline_events.ci.high == math.inf
    with pytest.raises(ValueError):
        rate_ratio_test(1, 0.0, 1, 1.0)


def test_cohen_kappa_by_hand_and_against_sklearn() -> None:
    assert cohen_kappa([1, 1, 0, 0], [1, 0, 0, 0]) == pytest.approx(0.5)  # po .75, pe .5
    assert cohen_kappa(["bear"] * 3, ["bear"] * 3) is None  # chance agreement 1: undefined
    assert cohen_kappa([], []) is None
    assert cohen_kappa([1, 0, 1, 0], [0, 1, 0, 1]) == pytest.approx(-1.0)
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(3)
    a = rng.integers(0, 2, 200).tolist()
    b = [x if rng.random() < 0.8 else 1 - x for x in a]
    assert cohen_kappa(a, b) == pytest.approx(sklearn_metrics.cohen_kappa_score(a, b))


def _mmd2_by_loops(x: np.ndarray, y: np.ndarray, s: float) -> float:
    def k(a: np.ndarray, b: np.ndarray) -> float:
        return math.exp(-float(np.sum((a - b) ** 2)) / (2 * s * s))

    m, n = len(x), len(y)
    sxx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    syy = sum(k(y[i], y[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    sxy = sum(k(x[i], y[j]) for i in range(m) for j in range(n)) / (m * n)
    return sxx + syy - 2 * sxy


def test_mmd_statistic_matches_the_definition_and_the_test_separates_shifts() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(12, 3))
    y = rng.normal(size=(10, 3)) + 1.0
    r = mmd_test(x, y, permutations=50, seed=1)
    pooled = np.vstack([x, y])
    dists = [np.linalg.norm(pooled[i] - pooled[j]) for i in range(len(pooled)) for j in range(i + 1, len(pooled))]
    assert r.bandwidth == pytest.approx(float(np.median(dists)))
    assert r.mmd2 == pytest.approx(_mmd2_by_loops(x, y, r.bandwidth))

    same = mmd_test(rng.normal(size=(150, 16)), rng.normal(size=(150, 16)), permutations=100, seed=2)
    shifted = mmd_test(rng.normal(size=(150, 16)), rng.normal(size=(150, 16)) + 0.5, permutations=100, seed=2)
    assert same.p_value > 0.05
    assert shifted.p_value == pytest.approx(1 / 101)
    # Seeded: the same call gives the same p-value; subsampling caps the sizes.
    big = mmd_test(rng.normal(size=(500, 4)), rng.normal(size=(400, 4)), permutations=20, max_n=100, seed=5)
    assert (big.n_x, big.n_y) == (100, 100)


def test_ks_and_share_comparisons() -> None:
    ks = ks_compare([0.1, 0.2, 0.3, 0.4], [0.5, 0.6, 0.7, 0.8])
    assert ks.statistic == 1.0
    assert ks.p_value == pytest.approx(2 / 70)  # exact: 2 of C(8,4) orderings are this extreme
    share = share_compare(5, 100, 30, 100)
    assert share.statistic == pytest.approx(0.25)
    assert share.p_value < 1e-4
    assert share_compare(5, 100, 5, 100).p_value == pytest.approx(1.0)
