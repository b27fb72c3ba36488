"""The statistics behind agreement, alert rates, drift and the gates: pure functions
over plain numbers and arrays (SciPy does the distributions).

- :func:`wilson_interval`: the Wilson 95% score interval of a proportion.
- :func:`rate_ratio_test`: two Poisson rates compared exactly, conditional on the total
  count (a binomial test), with the ratio's exact CI and a p-value for "the ratio lies
  outside [low, high]".
- :func:`cohen_kappa`: agreement of two rangers beyond chance.
- :func:`mmd_test`: the maximum mean discrepancy between two embedding samples (RBF
  kernel, median-heuristic bandwidth) with a seeded permutation p-value.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import stats as sps

Z95 = 1.959963984540054


@dataclass(frozen=True)
class Interval:
    low: float
    high: float


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> Interval | None:
    """The Wilson score interval of ``successes / n``; None when ``n`` is 0 (nothing known)."""
    if n < 0 or not 0 <= successes <= n:
        raise ValueError(f"need 0 <= successes <= n, got {successes} of {n}")
    if n == 0:
        return None
    ci = sps.binomtest(successes, n).proportion_ci(confidence_level=confidence, method="wilson")
    return Interval(float(ci.low), float(ci.high))


@dataclass(frozen=True)
class RateRatio:
    """Current rate over baseline rate, ``(x1 / t1) / (x0 / t0)``."""

    x1: int  # events in the current window
    t1: float  # its exposure (camera-hours)
    x0: int  # events in the baseline window
    t0: float
    ratio: float  # inf when x0 == 0 < x1; nan when both are 0
    ci: Interval  # exact (Clopper-Pearson on the conditional binomial) CI of the ratio
    p_above: float  # one-sided p of H0 ratio <= high (small: the rate went up past high)
    p_below: float  # one-sided p of H0 ratio >= low (small: the rate fell below low)
    p_outside: float  # min(1, 2 * min(p_above, p_below)): H0 "ratio inside [low, high]"
    low: float
    high: float

    def outside(self, alpha: float) -> bool:
        """Significantly outside the band at level ``alpha``."""
        return self.p_outside < alpha

    @property
    def direction(self) -> str:
        if self.p_above <= self.p_below:
            return "up"
        return "down"


def _ratio_from_p(p: float, t1: float, t0: float) -> float:
    if p >= 1.0:
        return math.inf
    return p / (1.0 - p) * t0 / t1


def rate_ratio_test(
    x1: int, t1: float, x0: int, t0: float, *, low: float = 0.5, high: float = 2.0, confidence: float = 0.95
) -> RateRatio:
    """Exact comparison of two Poisson rates (counts ``x1``, ``x0`` over exposures ``t1``, ``t0``).

    Conditional on ``n = x1 + x0``, ``x1 ~ Binomial(n, p)`` with ``p = R t1 / (R t1 + t0)``
    for the rate ratio ``R`` — so a ratio ``R`` maps to a binomial proportion and the
    exact binomial test and Clopper-Pearson interval carry over. The null hypothesis is
    "the ratio is inside [low, high]"; it is rejected when either one-sided test (ratio
    <= high against ratio > high; ratio >= low against ratio < low) rejects. The two
    one-sided p-values are Bonferroni-combined (doubled, smaller one), so the whole test
    keeps its level for any ratio inside the band, like a two-sided test.
    """
    if t1 <= 0 or t0 <= 0:
        raise ValueError(f"exposures must be positive, got t1={t1}, t0={t0}")
    if x1 < 0 or x0 < 0:
        raise ValueError("counts must be >= 0")
    if not 0 < low <= high:
        raise ValueError(f"need 0 < low <= high, got [{low}, {high}]")
    n = x1 + x0
    rate1, rate0 = x1 / t1, x0 / t0
    if x0 == 0:
        ratio = math.nan if x1 == 0 else math.inf
    else:
        ratio = rate1 / rate0
    if n == 0:
        return RateRatio(x1, t1, x0, t0, ratio, Interval(0.0, math.inf), 1.0, 1.0, 1.0, low, high)
    p_high = high * t1 / (high * t1 + t0)
    p_low = low * t1 / (low * t1 + t0)
    p_above = float(sps.binomtest(x1, n, p_high, alternative="greater").pvalue)
    p_below = float(sps.binomtest(x1, n, p_low, alternative="less").pvalue)
    ci = sps.binomtest(x1, n).proportion_ci(confidence_level=confidence, method="exact")
    interval = Interval(_ratio_from_p(float(ci.low), t1, t0), _ratio_from_p(float(ci.high), t1, t0))
    return RateRatio(
        x1, t1, x0, t0, ratio, interval, p_above, p_below, min(1.0, 2.0 * min(p_above, p_below)), low, high
    )


def cohen_kappa(a: Sequence[Hashable], b: Sequence[Hashable]) -> float | None:
    """Cohen's kappa of two raters' labels on the same items; None when undefined (no
    items, or chance agreement is 1: both raters always gave the same single label)."""
    if len(a) != len(b):
        raise ValueError("both raters must label the same items")
    n = len(a)
    if n == 0:
        return None
    labels = sorted(set(a) | set(b), key=repr)
    observed = sum(x == y for x, y in zip(a, b, strict=True)) / n
    expected = sum((list(a).count(lab) / n) * (list(b).count(lab) / n) for lab in labels)
    if expected >= 1.0:
        return None
    return (observed - expected) / (1.0 - expected)


@dataclass(frozen=True)
class MmdResult:
    mmd2: float  # unbiased estimate of the squared MMD
    p_value: float  # permutation p-value, (1 + #perm >= observed) / (1 + permutations)
    bandwidth: float  # RBF kernel bandwidth (median pairwise distance)
    n_x: int  # sample sizes used (after subsampling)
    n_y: int
    permutations: int


def _mmd2_unbiased(k: np.ndarray, idx_x: np.ndarray, idx_y: np.ndarray) -> float:
    kxx = k[np.ix_(idx_x, idx_x)]
    kyy = k[np.ix_(idx_y, idx_y)]
    kxy = k[np.ix_(idx_x, idx_y)]
    m, n = len(idx_x), len(idx_y)
    sxx = (kxx.sum() - np.trace(kxx)) / (m * (m - 1))
    syy = (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
    return float(sxx + syy - 2.0 * kxy.mean())


def mmd_test(
    x: np.ndarray, y: np.ndarray, *, permutations: int = 200, max_n: int = 300, seed: int = 0
) -> MmdResult:
    """Two-sample MMD test between embedding samples ``x`` (n, d) and ``y`` (m, d).

    RBF kernel ``exp(-|a-b|^2 / (2 s^2))`` with ``s`` the median pairwise distance of the
    pooled sample; each sample is subsampled to ``max_n`` rows (seeded) to bound the cost
    (the kernel matrix is (2 max_n)^2); the p-value comes from ``permutations`` seeded
    relabellings of the pooled sample.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if len(x) < 2 or len(y) < 2:
        raise ValueError("each sample needs at least 2 rows")
    rng = np.random.default_rng(seed)
    if len(x) > max_n:
        x = x[rng.choice(len(x), max_n, replace=False)]
    if len(y) > max_n:
        y = y[rng.choice(len(y), max_n, replace=False)]
    pooled = np.vstack([x, y])
    sq = np.sum(pooled**2, axis=1)
    d2 = np.maximum(sq[:, None] + sq[None, :] - 2.0 * pooled @ pooled.T, 0.0)
    upper = d2[np.triu_indices(len(pooled), k=1)]
    median = float(np.sqrt(np.median(upper))) if upper.size else 0.0
    bandwidth = median if median > 0 else 1.0
    k = np.exp(-d2 / (2.0 * bandwidth**2))
    m = len(x)
    idx = np.arange(len(pooled))
    observed = _mmd2_unbiased(k, idx[:m], idx[m:])
    exceed = 0
    for _ in range(permutations):
        perm = rng.permutation(len(pooled))
        if _mmd2_unbiased(k, perm[:m], perm[m:]) >= observed:
            exceed += 1
    return MmdResult(observed, (1 + exceed) / (1 + permutations), bandwidth, m, len(y), permutations)


@dataclass(frozen=True)
class TwoSample:
    """A two-sample comparison of one metric: reference vs current."""

    statistic: float  # KS D, or the difference of shares (current - reference)
    p_value: float
    reference: float  # a summary of the reference (mean or share)
    current: float


def ks_compare(reference: npt.ArrayLike, current: npt.ArrayLike) -> TwoSample:
    """Two-sample Kolmogorov-Smirnov test; the statistic is D (0..1)."""
    ref, cur = np.asarray(reference, float), np.asarray(current, float)
    res = sps.ks_2samp(ref, cur)
    return TwoSample(float(res.statistic), float(res.pvalue), float(np.mean(ref)), float(np.mean(cur)))


def share_compare(ref_hits: int, ref_n: int, cur_hits: int, cur_n: int) -> TwoSample:
    """Two shares compared with Fisher's exact test; the statistic is the difference."""
    if ref_n <= 0 or cur_n <= 0:
        raise ValueError("both samples need at least one item")
    table = np.array([[cur_hits, cur_n - cur_hits], [ref_hits, ref_n - ref_hits]])
    p = float(sps.fisher_exact(table).pvalue)
    ref_share, cur_share = ref_hits / ref_n, cur_hits / cur_n
    return TwoSample(cur_share - ref_share, p, ref_share, cur_share)
