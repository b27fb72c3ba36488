"""Promotion gates: manual -> limited and limited -> expanded (design.md section 5).

A gate answers pass, fail or inconclusive (not enough data yet) with every check's
value, threshold and the data it used. The checks are pure functions over plain data;
:func:`evaluate_gate` gathers that data for a site from the database.
"""

from __future__ import annotations

import enum
import math
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from bearwatch.config import Thresholds
from bearwatch.errors import InvalidTransition
from bearwatch.schema import Alert, Camera, CameraHealth, Decision, DriftEvent, Site, Stage, Verdict
from shadow.stats import RateRatio, wilson_interval

if TYPE_CHECKING:
    from shadow.agreement import Confusion


class GateOutcome(str, enum.Enum):
    PASS = "pass"
    FAIL = "fail"
    INCONCLUSIVE = "inconclusive"  # not enough data yet


@dataclass(frozen=True)
class Check:
    name: str  # e.g. "recall_lower_bound"
    outcome: GateOutcome
    value: float | None  # what was measured (None: nothing to measure yet)
    threshold: float
    comparison: str  # ">=", "<=", "inside"
    data: dict[str, Any] = field(default_factory=dict)  # the counts it used
    detail: str = ""  # one line for people


@dataclass(frozen=True)
class GateResult:
    site: str
    from_stage: Stage
    to_stage: Stage
    outcome: GateOutcome
    checks: tuple[Check, ...]
    evaluated_at: datetime

    def as_evidence(self) -> dict[str, Any]:
        """The JSON stored in the ledger row of a promotion."""
        return {
            "gate": f"{self.from_stage.value}->{self.to_stage.value}",
            "outcome": self.outcome.value,
            "evaluated_at": self.evaluated_at.isoformat(),
            "checks": [{**asdict(c), "outcome": c.outcome.value} for c in self.checks],
        }


def combine(checks: list[Check]) -> GateOutcome:
    """Any fail fails; otherwise any inconclusive is inconclusive; else pass."""
    outcomes = {c.outcome for c in checks}
    if GateOutcome.FAIL in outcomes:
        return GateOutcome.FAIL
    if GateOutcome.INCONCLUSIVE in outcomes or not checks:
        return GateOutcome.INCONCLUSIVE
    return GateOutcome.PASS


# --- the evidence each gate reads (plain data) ---


@dataclass(frozen=True)
class ShadowEvidence:
    """manual -> limited: what the shadow window showed."""

    window_days: float  # how long the site has been in manual (the shadow window)
    confusion: Confusion  # the model against the rangers on the reviewed frames
    drift_checks: int  # drift checks run in the window
    drift_alarms: int
    cameras_enabled: int
    cameras_online: int
    cameras_unknown: int  # health not known yet


@dataclass(frozen=True)
class TrialEvidence:
    """limited -> expanded: what the trial showed."""

    trial_days: float  # the trial window's planned length
    elapsed_days: float  # since the trial started
    finished: bool  # now >= trial end
    alerts_reviewed: int
    alerts_confirmed: int
    missed_bears: int  # MISSED reports on frames the model did not alert on
    rate: RateRatio | None  # alert rate vs the manual baseline; None: no baseline yet


# --- pure checks ---


def check_at_least(name: str, value: float | None, threshold: float, data: dict[str, Any], unit: str = "") -> Check:
    """Enough of something (days, reviews): below the threshold is "not yet", never a fail."""
    if value is None or value < threshold:
        shown = "nothing" if value is None else f"{value:g}{unit}"
        return Check(name, GateOutcome.INCONCLUSIVE, value, threshold, ">=", data, f"{shown} so far, needs {threshold:g}{unit}")
    return Check(name, GateOutcome.PASS, value, threshold, ">=", data, f"{value:g}{unit} >= {threshold:g}{unit}")


def check_lower_bound(name: str, successes: int, n: int, threshold: float, *, enough_data: bool) -> Check:
    """A proportion's Wilson 95% lower bound against ``threshold``. Pass when the lower
    bound reaches it; fail when even the upper bound falls short, or when the data is
    complete (``enough_data``) and the lower bound falls short; else inconclusive."""
    ci = wilson_interval(successes, n)
    data: dict[str, Any] = {"successes": successes, "n": n}
    if ci is None:
        return Check(name, GateOutcome.INCONCLUSIVE, None, threshold, ">=", data, "no data yet")
    data.update(estimate=successes / n, ci_low=ci.low, ci_high=ci.high)
    line = f"{successes}/{n} = {successes / n:.3f}, 95% CI [{ci.low:.3f}, {ci.high:.3f}], needs lower bound >= {threshold:g}"
    if ci.low >= threshold:
        outcome = GateOutcome.PASS
    elif ci.high < threshold or enough_data:
        outcome = GateOutcome.FAIL
    else:
        outcome = GateOutcome.INCONCLUSIVE
        line += " (too few reviews to decide yet)"
    return Check(name, outcome, ci.low, threshold, ">=", data, line)


def check_no_drift_alarm(checks_run: int, alarms: int) -> Check:
    data = {"drift_checks": checks_run, "drift_alarms": alarms}
    if alarms > 0:
        return Check("no_drift_alarm", GateOutcome.FAIL, float(alarms), 0, "<=", data, f"{alarms} drift alarm(s) in the window")
    if checks_run == 0:
        return Check("no_drift_alarm", GateOutcome.INCONCLUSIVE, None, 0, "<=", data,
                     "no drift check ran in the window; run `bearwatch drift SITE --record`")
    return Check("no_drift_alarm", GateOutcome.PASS, 0.0, 0, "<=", data, f"no alarm in {checks_run} drift check(s)")


def check_cameras_healthy(enabled: int, online: int, unknown: int) -> Check:
    data = {"enabled": enabled, "online": online, "unknown": unknown}
    if enabled == 0:
        return Check("cameras_healthy", GateOutcome.INCONCLUSIVE, None, 1.0, ">=", data, "no enabled cameras")
    share = online / enabled
    if online + unknown < enabled:
        return Check("cameras_healthy", GateOutcome.FAIL, share, 1.0, ">=", data,
                     f"{enabled - online - unknown} of {enabled} enabled cameras degraded or offline")
    if unknown:
        return Check("cameras_healthy", GateOutcome.INCONCLUSIVE, share, 1.0, ">=", data, f"{unknown} camera(s) not checked yet")
    return Check("cameras_healthy", GateOutcome.PASS, share, 1.0, ">=", data, f"all {enabled} enabled cameras online")


def manual_gate_checks(ev: ShadowEvidence, t: Thresholds) -> list[Check]:
    m = ev.confusion
    counts = {"tp": m.tp, "fp": m.fp, "fn": m.fn, "tn": m.tn, "disputed": m.disputed}
    window = check_at_least("shadow_window_days", ev.window_days, t.shadow_days, {}, " days")
    reviewed = check_at_least("reviewed_frames", m.reviewed, t.min_reviewed, counts)
    bears = check_at_least("confirmed_bears", m.bears, t.min_confirmed_bears, counts)
    enough = all(c.outcome is GateOutcome.PASS for c in (window, reviewed, bears))
    return [
        window, reviewed, bears,
        check_lower_bound("recall_lower_bound", m.tp, m.tp + m.fn, t.min_recall_lower, enough_data=enough),
        check_lower_bound("precision_lower_bound", m.tp, m.tp + m.fp, t.min_precision_lower, enough_data=enough),
        check_no_drift_alarm(ev.drift_checks, ev.drift_alarms),
        check_cameras_healthy(ev.cameras_enabled, ev.cameras_online, ev.cameras_unknown),
    ]


def check_trial_finished(ev: TrialEvidence, t: Thresholds) -> Check:
    data = {"elapsed_days": ev.elapsed_days, "planned_days": ev.trial_days, "finished": ev.finished}
    if ev.finished and ev.elapsed_days >= t.trial_days:
        return Check("trial_finished", GateOutcome.PASS, ev.elapsed_days, t.trial_days, ">=", data,
                     f"trial ran {ev.elapsed_days:.1f} days")
    return Check("trial_finished", GateOutcome.INCONCLUSIVE, ev.elapsed_days, t.trial_days, ">=", data,
                 f"trial at {ev.elapsed_days:.1f} days, needs {t.trial_days:g} and its window to end")


def check_confirmed_share(ev: TrialEvidence, t: Thresholds) -> Check:
    data = {"confirmed": ev.alerts_confirmed, "reviewed": ev.alerts_reviewed}
    if ev.alerts_reviewed == 0:
        return Check("confirmed_share", GateOutcome.INCONCLUSIVE, None, t.min_confirmed_share, ">=", data, "no reviewed alerts yet")
    share = ev.alerts_confirmed / ev.alerts_reviewed
    outcome = GateOutcome.PASS if share >= t.min_confirmed_share else GateOutcome.FAIL
    return Check("confirmed_share", outcome, share, t.min_confirmed_share, ">=", data,
                 f"{ev.alerts_confirmed}/{ev.alerts_reviewed} alerts confirmed = {share:.3f}")


def check_missed_bears(ev: TrialEvidence, t: Thresholds) -> Check:
    outcome = GateOutcome.PASS if ev.missed_bears <= t.max_missed_bears else GateOutcome.FAIL
    return Check("missed_bears", outcome, float(ev.missed_bears), t.max_missed_bears, "<=", {"missed": ev.missed_bears},
                 f"{ev.missed_bears} bear(s) reported missed, at most {t.max_missed_bears}")


def rate_data(rate: RateRatio) -> dict[str, Any]:
    def finite(x: float) -> float | None:
        return x if math.isfinite(x) else None

    return {"alerts": rate.x1, "camera_hours": rate.t1, "baseline_sightings": rate.x0, "baseline_camera_hours": rate.t0,
            "ratio": finite(rate.ratio), "ci_low": finite(rate.ci.low), "ci_high": finite(rate.ci.high),
            "p_outside": rate.p_outside, "low": rate.low, "high": rate.high}


def check_alert_rate_ratio(rate: RateRatio | None, t: Thresholds) -> Check:
    """The point estimate must lie inside [low, high] to promote (the guard, by contrast,
    acts only on a significant departure)."""
    band = t.alert_ratio_high
    if rate is None:
        return Check("alert_rate_ratio", GateOutcome.INCONCLUSIVE, None, band, "inside", {},
                     "no manual baseline (no camera-hours in the manual period)")
    data = rate_data(rate)
    if math.isnan(rate.ratio):
        return Check("alert_rate_ratio", GateOutcome.INCONCLUSIVE, None, band, "inside", data, "no alerts and no baseline sightings")
    inside = t.alert_ratio_low <= rate.ratio <= t.alert_ratio_high
    line = (f"ratio {rate.ratio:.2f} (95% CI {rate.ci.low:.2f}-{rate.ci.high:.2f}) vs band "
            f"[{t.alert_ratio_low:g}, {t.alert_ratio_high:g}]; {rate.x1} alerts / {rate.t1:.0f} camera-h "
            f"vs {rate.x0} sightings / {rate.t0:.0f} camera-h")
    return Check("alert_rate_ratio", GateOutcome.PASS if inside else GateOutcome.FAIL,
                 rate.ratio if math.isfinite(rate.ratio) else None, band, "inside", data, line)


def trial_gate_checks(ev: TrialEvidence, t: Thresholds) -> list[Check]:
    return [
        check_trial_finished(ev, t),
        check_at_least("alerts_reviewed", ev.alerts_reviewed, t.min_alerts_reviewed,
                       {"reviewed": ev.alerts_reviewed, "confirmed": ev.alerts_confirmed}),
        check_confirmed_share(ev, t),
        check_missed_bears(ev, t),
        check_alert_rate_ratio(ev.rate, t),
    ]


# --- gathering the evidence ---


def _days(a: datetime, b: datetime) -> float:
    return (b - a).total_seconds() / 86400.0


def drift_counts(session: Session, site: Site, start: datetime, end: datetime) -> tuple[int, int]:
    checks, alarms = session.execute(
        sa.select(sa.func.count(), sa.func.count().filter(DriftEvent.alarm))
        .where(DriftEvent.site_id == site.id, DriftEvent.created_at >= start, DriftEvent.created_at <= end)
    ).one()
    return int(checks or 0), int(alarms or 0)


def camera_counts(session: Session, site: Site) -> tuple[int, int, int]:
    rows = session.scalars(sa.select(Camera.health).where(Camera.site_id == site.id, Camera.enabled)).all()
    return len(rows), sum(h is CameraHealth.ONLINE for h in rows), sum(h is CameraHealth.UNKNOWN for h in rows)


def shadow_window_start(session: Session, site: Site) -> datetime:
    """The shadow window starts when the site entered manual or when its rollout model
    was set, whichever is later (a new model starts in shadow: design.md section 5)."""
    from bearwatch.schema import StageChange

    model_set = session.scalar(
        sa.select(sa.func.min(StageChange.changed_at))
        .where(StageChange.site_id == site.id, StageChange.model_version_id == site.rollout_model_id)
    ) if site.rollout_model_id is not None else None
    return max(site.stage_since, model_set) if model_set is not None else site.stage_since


def shadow_evidence(session: Session, site: Site, now: datetime) -> ShadowEvidence:
    from shadow.agreement import Confusion, site_agreement

    start = shadow_window_start(session, site)
    report = site_agreement(session, site, start, now)
    c = report.confusion if report else Confusion(0, 0, 0, 0, 0)
    checks, alarms = drift_counts(session, site, start, now)
    enabled, online, unknown = camera_counts(session, site)
    return ShadowEvidence(_days(start, now), c, checks, alarms, enabled, online, unknown)


def trial_evidence(session: Session, site: Site, now: datetime, t: Thresholds) -> TrialEvidence:
    from shadow.alert_rates import alert_rate_comparison
    from shadow.agreement import Truth, truth_of

    start = site.trial_start or site.stage_since
    end = site.trial_end or now
    verdict_rows = session.execute(
        sa.select(Alert.id, Decision.reviewer_id, Decision.verdict)
        .join(Decision, Decision.frame_id == Alert.frame_id)
        .where(Alert.site_id == site.id, Alert.stage == Stage.LIMITED, Alert.created_at >= start, Alert.created_at <= now)
        .order_by(Alert.id, Decision.id)
    ).all()
    by_alert: dict[int, list[tuple[int, Verdict]]] = {}
    for alert_id, reviewer, verdict in verdict_rows:
        by_alert.setdefault(alert_id, []).append((reviewer, verdict))
    confirmed = sum(1 for v in by_alert.values() if truth_of(v) is Truth.BEAR)
    missed = missed_bears(session, site, start, now)
    comparison = alert_rate_comparison(session, site, now, t)
    return TrialEvidence(
        trial_days=_days(start, end), elapsed_days=_days(start, now), finished=now >= end,
        alerts_reviewed=len(by_alert), alerts_confirmed=confirmed, missed_bears=missed,
        rate=comparison.test if comparison else None,
    )


def missed_bears(session: Session, site: Site, start: datetime, end: datetime) -> int:
    """Frames in [start, end] with a MISSED report and no alert of the site, on the
    trial scope's cameras and hours."""
    from bearwatch.schema import Frame
    from shadow.alert_rates import trial_scope_of

    alerted = sa.select(Alert.frame_id).where(Alert.site_id == site.id)
    rows = session.execute(
        sa.select(Frame.camera_id, Frame.captured_at, Frame.is_night).distinct()
        .join(Decision, Decision.frame_id == Frame.id)
        .join(Camera, Camera.id == Frame.camera_id)
        .where(Camera.site_id == site.id, Decision.verdict == Verdict.MISSED,
               Frame.captured_at >= start, Frame.captured_at <= end, Frame.id.not_in(alerted))
    ).all()
    return len(trial_scope_of(site).filter([(c, at, night) for c, at, night in rows]))


def evaluate_gate(session: Session, site: Site, now: datetime) -> GateResult:
    """The gate out of the site's current stage, evaluated on the data up to ``now``."""
    from shadow.periods import thresholds_of

    t = thresholds_of(site)
    if site.stage is Stage.MANUAL:
        checks = manual_gate_checks(shadow_evidence(session, site, now), t)
        if site.rollout_model_id is None:
            checks.insert(0, Check("rollout_model", GateOutcome.FAIL, None, 1, ">=", {}, "the site has no rollout model"))
        to_stage = Stage.LIMITED
    elif site.stage is Stage.LIMITED:
        checks = trial_gate_checks(trial_evidence(session, site, now, t), t)
        to_stage = Stage.EXPANDED
    else:
        raise InvalidTransition(f"site {site.name} is expanded: there is no gate out of the last stage")
    return GateResult(site.name, site.stage, to_stage, combine(checks), tuple(checks), now)
