"""The audit design: which unflagged frames rangers review, and the probability each one
had of being chosen (design.md section 5).

Every flagged frame of a site's rollout model is reviewed (inclusion probability 1). An
unflagged frame is in the audit sample when a hash of its id falls below its stratum's
rate: stable (the same frames every time), unbiased (ids follow capture order, not
content), and its inclusion probability is exactly that rate. Strata:

- ``near``: scores from ``audit_near_from`` x the threshold up to the threshold, where a
  model's misses concentrate, at ``audit_near_rate``;
- ``night`` / ``day``: the other unflagged frames, at ``audit_night_rate`` (default
  ``audit_rate``) or ``audit_rate``.

The same selection runs in SQL (:func:`audit_rate_sql`) for the review queue.
"""

from __future__ import annotations

import enum

import sqlalchemy as sa

from bearwatch.park_file import Thresholds
from shadow.alert_rules import HASH_MODULUS, HASH_MULTIPLIER, audit_hash, audit_threshold


class Stratum(str, enum.Enum):
    FLAGGED = "flagged"  # the model flagged it: always reviewed
    NEAR = "near"
    NIGHT = "night"
    DAY = "day"


def night_rate(t: Thresholds) -> float:
    return t.audit_rate if t.audit_night_rate is None else t.audit_night_rate


def stratum_of(score: float, night: bool | None, flagged: bool, model_threshold: float, t: Thresholds) -> Stratum:
    if flagged:
        return Stratum.FLAGGED
    if t.audit_near_rate > 0 and score >= t.audit_near_from * model_threshold:
        return Stratum.NEAR
    return Stratum.NIGHT if night else Stratum.DAY


def stratum_rate(stratum: Stratum, t: Thresholds) -> float:
    return {Stratum.FLAGGED: 1.0, Stratum.NEAR: t.audit_near_rate, Stratum.NIGHT: night_rate(t),
            Stratum.DAY: t.audit_rate}[stratum]


def inclusion_probability(score: float, night: bool | None, flagged: bool, model_threshold: float, t: Thresholds) -> float:
    """The probability the design puts this frame before a ranger."""
    return stratum_rate(stratum_of(score, night, flagged, model_threshold, t), t)


def in_audit(frame_id: int, score: float, night: bool | None, model_threshold: float, t: Thresholds) -> bool:
    """Whether an unflagged frame is in the audit sample."""
    rate = inclusion_probability(score, night, False, model_threshold, t)
    return audit_hash(frame_id) < audit_threshold(rate)


def min_inclusion(t: Thresholds) -> float:
    """The smallest chance the design gives an unflagged frame: a missed sighting may be a
    single frame in that stratum, so recall bounds that must hold for every sighting use it."""
    rates = [t.audit_rate, night_rate(t)] + ([t.audit_near_rate] if t.audit_near_from < 1.0 else [])
    return min(rates)


def audit_rate_sql(score: sa.SQLColumnExpression[float], night: sa.SQLColumnExpression[bool | None],
                   model_threshold: float, t: Thresholds) -> sa.ColumnElement[int]:
    """SQL: the hash threshold of an unflagged frame's stratum (compare the id hash below it)."""
    return sa.case(
        (sa.and_(sa.literal(t.audit_near_rate > 0), score >= t.audit_near_from * model_threshold),
         audit_threshold(t.audit_near_rate)),
        (night.is_(True), audit_threshold(night_rate(t))),
        else_=audit_threshold(t.audit_rate),
    )


def id_hash_sql(frame_id: sa.SQLColumnExpression[int]) -> sa.ColumnElement[int]:
    return (frame_id * HASH_MULTIPLIER) % HASH_MODULUS
