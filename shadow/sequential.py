"""Anytime-valid statistics: bounds and tests whose error rates hold however often they
are looked at (design.md section 5: the guard runs every minute, gates are re-evaluated
daily until they pass).

- :func:`proportion_bounds`: a confidence *sequence* for a Bernoulli proportion. For each
  side, the mixture likelihood ratio of the data against a candidate ``p0``, mixed over a
  uniform prior on the alternatives beyond ``p0``, is a non-negative supermartingale under
  every ``p`` on the null side; by Ville's inequality it ever reaches ``1/alpha`` with
  probability at most ``alpha``. The bound is the ``p0`` where it reaches ``1/alpha``.
  Robbins (1970), "Statistical methods related to the law of the iterated logarithm",
  Ann. Math. Statist. 41; Howard, Ramdas, McAuliffe & Sekhon (2021), "Time-uniform,
  nonparametric, nonasymptotic confidence sequences", Ann. Statist. 49, section 3.
- :func:`ratio_evalue`: the guard's e-process for "the current rate is at most (at
  least) ``r0`` times the baseline rate". Conditional on the total count, the current
  count is binomial with ``p = R t1 / (R t1 + t0)`` (the test the guard has always used);
  the e-process is the likelihood ratio of that conditional binomial mixed over
  alternatives ``R = r0 * theta`` (a mixture SPRT, Lai 1976), which equals the Bayes
  factor with the baseline rate integrated out under the scale-invariant prior. Like the
  historical-control surveillance tests (Li & Kulldorff 2010, CMaxSPRT) it treats the
  baseline as fixed data; its false-alarm rate with a baseline of a few dozen events is
  measured by ``bench/calibration.py`` (below the nominal level in every cell published).

The libraries that implement these (``confseq``) ship only as C++ sources needing Boost;
the formulas are closed-form (SciPy's log-beta and log-gamma tails), so they live here.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import special as spf
from scipy import stats as sps
from scipy.special import logsumexp

# Alternatives the guard's mixture weighs equally: R = r0 * theta (up) or r0 / theta (down).
GUARD_THETAS = (1.25, 1.5, 2.0, 3.0, 4.0, 6.0)
_EPS = 1e-12


def log_evalue_above(x: int, n: int, p0: float) -> float:
    """log of the mixture e-value against H0 ``p <= p0`` (large: p is above p0), after ``x``
    successes in ``n``; the mixture is uniform on (p0, 1)."""
    if p0 <= 0.0:
        return 0.0 if n == 0 else math.inf
    if p0 >= 1.0:
        return -math.inf if x < n else 0.0
    # int_{p0}^1 t^x (1-t)^(n-x) dt / (1-p0) over p0^x (1-p0)^(n-x)
    upper = float(spf.betaincc(x + 1, n - x + 1, p0))  # P(Beta(x+1, n-x+1) > p0)
    log_upper = math.log(upper) if upper > 1e-300 else float(sps.beta.logsf(p0, x + 1, n - x + 1))
    tail = log_upper + float(spf.betaln(x + 1, n - x + 1))
    return tail - math.log1p(-p0) - x * math.log(p0) - (n - x) * math.log1p(-p0)


def log_evalue_below(x: int, n: int, p0: float) -> float:
    """log of the mixture e-value against H0 ``p >= p0`` (large: p is below p0)."""
    return log_evalue_above(n - x, n, 1.0 - p0)


def _solve(f: Callable[[float], bool], lo: float, hi: float, *, true_at_lo: bool) -> float:
    """Bisection for the boundary of a monotone predicate on [lo, hi]."""
    for _ in range(34):  # 2^-34: far below what any decision reads
        mid = (lo + hi) / 2
        if f(mid) == true_at_lo:
            lo = mid
        else:
            hi = mid
    return lo if true_at_lo else hi


@dataclass(frozen=True)
class Bounds:
    """An anytime-valid interval: each side holds with probability >= 1 - alpha/2 at every
    look at once."""

    low: float
    high: float


def proportion_bounds(x: int, n: int, alpha: float = 0.05) -> Bounds:
    """Confidence sequence for a proportion after ``x`` successes in ``n`` (alpha split
    evenly between the two sides)."""
    if n < 0 or not 0 <= x <= n:
        raise ValueError(f"need 0 <= x <= n, got {x} of {n}")
    level = math.log(2.0 / alpha)
    low = 0.0 if x == 0 else _solve(lambda p: log_evalue_above(x, n, p) >= level, 0.0, 1.0, true_at_lo=True)
    high = 1.0 if x == n else _solve(lambda p: log_evalue_below(x, n, p) >= level, 0.0, 1.0, true_at_lo=False)
    return Bounds(low, high)


def proportion_lower(x: int, n: int, alpha: float = 0.05) -> float:
    return proportion_bounds(x, n, alpha).low


def events_to_reach(x: int, n: int, target: float, alpha: float = 0.05, *, share: float | None = None,
                    limit: int = 100_000) -> int | None:
    """How many more trials, succeeding at ``share`` (default: the observed share, or 1
    when nothing was observed), bring the lower bound to ``target``; None: beyond ``limit``
    (or never, when the share itself is below the target)."""
    s = (x / n if n else 1.0) if share is None else share
    if s <= target:
        return None
    if proportion_lower(x, n, alpha) >= target:
        return 0
    lo, hi = 0, 1
    while proportion_lower(x + round(s * hi), n + hi, alpha) < target:
        lo, hi = hi, hi * 2
        if hi > limit:
            return None
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if proportion_lower(x + round(s * mid), n + mid, alpha) >= target:
            hi = mid
        else:
            lo = mid
    return hi


# --- rate ratios (guard, alert-rate checks) ---


def _log_lik_ratio(x1: int, t1: float, x0: int, t0: float, r: np.ndarray | float) -> np.ndarray:
    """log conditional-binomial likelihood of ``x1`` current of ``x1 + x0`` events at ratio r
    (up to a constant)."""
    r = np.asarray(r, dtype=float)
    return x1 * np.log(r) - (x1 + x0) * np.log(t0 + r * t1)


def ratio_log_evalue(x1: int, t1: float, x0: int, t0: float, r0: float, *, up: bool) -> float:
    """log e-value against H0 "ratio <= r0" (``up``) or "ratio >= r0" (not ``up``): the
    conditional-binomial likelihood ratio mixed equally over ``GUARD_THETAS``."""
    if t1 <= 0 or t0 <= 0:
        return 0.0
    thetas = np.asarray(GUARD_THETAS)
    r1 = r0 * thetas if up else r0 / thetas
    terms = _log_lik_ratio(x1, t1, x0, t0, r1) - _log_lik_ratio(x1, t1, x0, t0, r0)
    return float(logsumexp(terms) - math.log(len(thetas)))


@dataclass(frozen=True)
class RatioDecision:
    """The guard's anytime-valid verdict on a rate ratio against the band [low, high]."""

    e_up: float  # e-value against "ratio <= high"
    e_down: float  # e-value against "ratio >= low"
    level: float  # each side alarms at this e-value (2 / alpha)
    up: bool
    down: bool

    @property
    def outside(self) -> bool:
        return self.up or self.down


def ratio_decision(x1: int, t1: float, x0: int, t0: float, *, low: float, high: float, alpha: float) -> RatioDecision:
    """Whether the current rate has left [low, high] times the baseline: each side tested
    at alpha/2, so the chance of a false alarm over the whole stage is at most alpha."""
    level = 2.0 / alpha
    e_up = math.exp(min(700.0, ratio_log_evalue(x1, t1, x0, t0, high, up=True)))
    e_down = math.exp(min(700.0, ratio_log_evalue(x1, t1, x0, t0, low, up=False)))
    return RatioDecision(e_up, e_down, level, e_up >= level, e_down >= level)


def ratio_bounds(x1: int, t1: float, x0: int, t0: float, alpha: float = 0.05) -> Bounds:
    """Anytime-valid interval of the ratio (x1/t1)/(x0/t0): the proportion's confidence
    sequence on the conditional binomial, mapped to ratios."""
    n = x1 + x0
    if n == 0 or t1 <= 0 or t0 <= 0:
        return Bounds(0.0, math.inf)
    b = proportion_bounds(x1, n, alpha)

    def to_ratio(p: float) -> float:
        return math.inf if p >= 1.0 - _EPS else p / (1.0 - p) * t0 / t1

    return Bounds(to_ratio(b.low), to_ratio(b.high))
