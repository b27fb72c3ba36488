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
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from bearwatch.errors import InvalidTransition
from bearwatch.park_file import Thresholds
from bearwatch.schema import Alert, Camera, CameraHealth, Decision, DriftEvent, Site, Stage, StageChange, Verdict
from shadow.agreement import Truth, truth_of
from shadow.alert_rates import alert_rate_comparison, baseline_exposure, group_sightings, trial_scope_of
from shadow.episodes import baseline_days_needed, days_to_demote, episode_band, episode_gap_s
from shadow.periods import Period, thresholds_of
from shadow.sequential import events_to_reach, proportion_lower, ratio_bounds
from shadow.sighting_evidence import site_sightings
from shadow.sightings import Estimate, SightingReport, precision_estimate, sighting_report
from shadow.stats import RateRatio


class GateOutcome(str, enum.Enum):
    PASS = "pass"
    FAIL = "fail"
    INCONCLUSIVE = "inconclusive"  # not enough data yet


@dataclass(frozen=True)
class Check:
    name: str  # e.g. "sighting_recall"
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
    drift_checks: int  # drift checks run in the window
    drift_alarms: int
    cameras_enabled: int
    cameras_online: int
    cameras_unknown: int  # health not known yet
    sightings: SightingReport | None = None  # the unit of the decision
    baseline_sightings: int = 0  # ranger-confirmed bear episodes in the window (the guard's baseline)
    baseline_camera_hours: float = 0.0
    baseline_gap_s: float = 0.0  # the episode gap (shadow.episodes)
    audited_frames: int = 0  # unflagged frames reviewed through the audit design
    unflagged_frames: int = 0  # unflagged frames scored in the window (audit workload)


@dataclass(frozen=True)
class TrialEvidence:
    """limited -> expanded: what the trial showed."""

    trial_days: float  # the trial window's planned length
    elapsed_days: float  # since the trial started
    finished: bool  # now >= trial end
    alerts_reviewed: int
    alerts_confirmed: int
    missed_bears: int  # missed sightings: bears reported on frames the model did not alert on
    rate: RateRatio | None  # alert rate vs the manual baseline; None: no baseline yet


# --- pure checks ---


def check_at_least(name: str, value: float | None, threshold: float, data: dict[str, Any], unit: str = "") -> Check:
    """Enough of something (days, reviews): below the threshold is "not yet", never a fail."""
    if value is None or value < threshold:
        shown = "nothing" if value is None else f"{value:g}{unit}"
        return Check(name, GateOutcome.INCONCLUSIVE, value, threshold, ">=", data, f"{shown} so far, needs {threshold:g}{unit}")
    return Check(name, GateOutcome.PASS, value, threshold, ">=", data, f"{value:g}{unit} >= {threshold:g}{unit}")


def estimate_line(est: Estimate, threshold: float, unit: str) -> str:
    return (f"{est.value:.3f}{unit} ({est.successes}/{est.n}), 95% anytime-valid bounds [{est.low:.3f}, {est.high:.3f}], "
            f"needs lower bound >= {threshold:g}")


def estimate_check(name: str, est: Estimate, threshold: float, *, unit: str, plan_unit: str,
                   per_day: float | None = None, extra: dict[str, Any] | None = None,
                   ceiling: float | None = None, ceiling_note: str = "") -> Check:
    """Pass: lower bound >= threshold. Fail: upper bound (or the census ceiling) < threshold.
    Else inconclusive, with a plan: how many more ``plan_unit`` at the observed share."""
    data: dict[str, Any] = {"successes": est.successes, "n": est.n, "estimate": est.value, "ci_low": est.low,
                            "ci_high": est.high, "method": est.method, **(extra or {})}
    if est.n == 0 or est.value is None:
        more = events_to_reach(0, 0, threshold)
        data["plan"] = {"more": more, "unit": plan_unit}
        return Check(name, GateOutcome.INCONCLUSIVE, None, threshold, ">=", data,
                     f"no {plan_unit} yet; at least {more} needed" if more else f"no {plan_unit} yet")
    line = estimate_line(est, threshold, unit)
    if est.low >= threshold:
        return Check(name, GateOutcome.PASS, est.low, threshold, ">=", data, line)
    if est.high < threshold:
        return Check(name, GateOutcome.FAIL, est.low, threshold, ">=", data, line + " (the evidence excludes it)")
    if ceiling is not None and ceiling < threshold:
        data["ceiling"] = ceiling
        return Check(name, GateOutcome.FAIL, est.low, threshold, ">=", data, line + f"; {ceiling_note}")
    more = events_to_reach(est.successes, est.n, threshold)
    plan: dict[str, Any] = {"more": more, "unit": plan_unit}
    if more is None:
        line += f" (at the observed share no amount of {plan_unit} decides it)"
    else:
        line += f" (about {more} more {plan_unit} at the observed share"
        if per_day:
            plan["days"] = more / per_day
            line += f", {_days_text(more / per_day)} at {per_day:.1f}/day"
        line += ")"
    data["plan"] = plan
    return Check(name, GateOutcome.INCONCLUSIVE, est.low, threshold, ">=", data, line)


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


def _days_text(days: float) -> str:
    return "under a day" if days < 1 else f"~{days:.0f} days"


AUDIT_RATES = (0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0)


def recall_target(threshold: float, min_inclusion: float) -> float:
    """The share of caught among observed sightings whose lower bound shows recall >=
    ``threshold`` when a miss may be found with probability only ``min_inclusion``."""
    return threshold / (threshold + max(min_inclusion, 1e-9) * (1.0 - threshold))


def sightings_to_pass(threshold: float, min_inclusion: float) -> int | None:
    """The fewest sightings with which the recall lower bound can reach ``threshold`` (all
    caught, none missed) when a miss is found with probability ``min_inclusion``: the
    gate's minimum, so that meeting it can pass (51 at a full audit, 2,422 at 2%)."""
    return events_to_reach(0, 0, recall_target(threshold, min_inclusion), share=1.0, limit=10_000_000)


def check_sightings(rep: SightingReport, t: Thresholds) -> Check:
    """Enough sightings that the recall check can pass: at least ``min_confirmed_bears``
    and at least :func:`sightings_to_pass` at the site's audit design."""
    seen = rep.caught + rep.misses
    can_pass = sightings_to_pass(t.min_recall_lower, rep.min_inclusion)
    needed = max(t.min_confirmed_bears, can_pass or 0)
    data = {"caught": rep.caught, "misses": rep.misses, "unit": "sightings", "min_confirmed_bears": t.min_confirmed_bears,
            "needed_to_pass_recall": can_pass, "min_inclusion": rep.min_inclusion}
    check = check_at_least("sightings", seen, needed, data)
    if check.outcome is GateOutcome.PASS or can_pass is None or can_pass <= t.min_confirmed_bears:
        return check
    return Check(check.name, check.outcome, check.value, check.threshold, check.comparison, data,
                 f"{check.detail}: the fewest with which the recall lower bound can reach {t.min_recall_lower:g} when "
                 f"misses are found at {rep.min_inclusion:.3g} (the thinnest audit stratum; a fuller audit needs fewer: "
                 f"{sightings_to_pass(t.min_recall_lower, 1.0)} at a full audit)")


def audit_plan(caught_per_day: float, horizon_days: float, recall: float | None, threshold: float,
               unflagged_per_day: float) -> dict[str, Any]:
    """The least audit rate (every stratum) that, at the current rates, would decide the
    recall check within ``horizon_days``; None when none would."""
    r = recall if recall is not None else 1.0
    if r <= threshold or caught_per_day <= 0:
        return {"audit_rate": None, "horizon_days": horizon_days}
    caught = round(caught_per_day * horizon_days)
    for rate in AUDIT_RATES:
        found = round(rate * caught * (1.0 - r) / r)
        if caught and proportion_lower(caught, caught + found) >= recall_target(threshold, rate):
            return {"audit_rate": rate, "horizon_days": horizon_days, "audited_frames_per_day": rate * unflagged_per_day}
    return {"audit_rate": None, "horizon_days": horizon_days}


def check_sighting_recall(ev: ShadowEvidence, t: Thresholds) -> Check:
    rep = ev.sightings
    assert rep is not None
    est = rep.recall
    days = max(ev.window_days, 1e-9)
    caught_per_day = rep.caught / days
    extra = {"caught": rep.caught, "misses_found": len(rep.misses_found), "misses_reported": len(rep.misses_reported),
             "min_inclusion": rep.min_inclusion, "unit": "sightings"}
    q_target = recall_target(t.min_recall_lower, rep.min_inclusion)
    check = estimate_check("sighting_recall", est, t.min_recall_lower, unit=" of sightings", plan_unit="sightings",
                           extra=extra, ceiling=rep.recall_ceiling,
                           ceiling_note=f"{rep.misses} missed sighting(s) found: recall at most {rep.recall_ceiling or 0:.3f}")
    if check.outcome is not GateOutcome.INCONCLUSIVE:
        return check
    more = events_to_reach(est.successes, est.n, q_target, share=1.0)
    horizon = max(t.shadow_days - ev.window_days, 7.0)
    audit = audit_plan(caught_per_day, horizon, est.value, t.min_recall_lower, ev.unflagged_frames / days)
    plan: dict[str, Any] = {"more": more, "unit": "caught sightings with no further miss found", "audit": audit}
    line = estimate_line(est, t.min_recall_lower, " of sightings") if est.value is not None else check.detail
    if more is not None:
        plan["days"] = more / caught_per_day if caught_per_day else None
        line += f"; about {more} more caught sightings with no miss found"
        line += f" ({_days_text(more / caught_per_day)} at {caught_per_day:.1f}/day)" if caught_per_day else ""
    if audit["audit_rate"] is not None:
        line += (f"; an audit of {audit['audit_rate']:.0%} in every stratum would decide it in {horizon:.0f} days "
                 f"(~{audit['audited_frames_per_day']:.0f} audited frames/day)")
    else:
        line += f"; no audit rate decides it within {horizon:.0f} days at the current sighting rate"
    return Check(check.name, check.outcome, check.value, check.threshold, check.comparison, {**check.data, "plan": plan}, line)


def check_band(name: str, x1: int, t1: float, x0: int, t0: float, t: Thresholds, data: dict[str, Any], what: str,
               episode_band: tuple[float, float] | None = None) -> Check:
    """A rate ratio against the guard's band: fail when its anytime-valid interval lies
    wholly outside, pass when the estimate is inside, else inconclusive. Counts are
    episodes; ``episode_band`` is the guard's band moved to them (shadow.episodes)."""
    band = t.alert_ratio_high
    low, high = episode_band or (t.alert_ratio_low, t.alert_ratio_high)
    if x0 == 0 and x1 == 0:
        return Check(name, GateOutcome.INCONCLUSIVE, None, band, "inside", data, f"no {what} yet")
    b = ratio_bounds(x1, t1, x0, t0)
    ratio = math.inf if x0 == 0 else (x1 / t1) / (x0 / t0)
    data = {**data, "ratio": ratio if math.isfinite(ratio) else None, "ci_low": b.low,
            "ci_high": b.high if math.isfinite(b.high) else None,
            "method": "conditional binomial, 95% anytime-valid beta-mixture confidence sequence"}
    line = (f"{what} {ratio:.2f} (95% anytime-valid {b.low:.2f}-{b.high:.2f}) vs band "
            f"[{low:.2f}, {high:.2f}]")
    if episode_band:
        data["episode_band"] = [low, high]
        line += f" (the guard's [{t.alert_ratio_low:g}, {t.alert_ratio_high:g}] in alerts, moved to episodes)"
    if b.high < low or b.low > high:
        return Check(name, GateOutcome.FAIL, ratio if math.isfinite(ratio) else None, band, "inside", data,
                     line + ": the guard would demote")
    if low <= ratio <= high:
        return Check(name, GateOutcome.PASS, ratio, band, "inside", data, line)
    return Check(name, GateOutcome.INCONCLUSIVE, ratio if math.isfinite(ratio) else None, band, "inside", data,
                 line + " (outside the band, not yet significantly)")


def check_predicted_ratio(ev: ShadowEvidence, t: Thresholds) -> Check:
    """The alert-rate ratio the model would have in expanded: its would-be alert episodes
    (false ones included) against the rangers' confirmed bear episodes, on the same
    camera-hours, counted as the guard counts them (shadow.alert_rates.episode_gap_s)."""
    rep = ev.sightings
    assert rep is not None
    gap = ev.baseline_gap_s or episode_gap_s(t)
    episodes = len(group_sightings([(a.camera_id, a.start, None) for a in rep.alerts], gap))
    data = {"would_be_alerts": len(rep.alerts), "would_be_episodes": episodes, "baseline_episodes": ev.baseline_sightings,
            "episode_gap_s": gap, "unit": "episodes (events on one camera within the gap count once)"}
    band = episode_band(ev.baseline_sightings, ev.baseline_camera_hours, gap, t.alert_ratio_low, t.alert_ratio_high)
    check = check_band("predicted_alert_ratio", episodes, 1.0, ev.baseline_sightings, 1.0, t, data,
                       "predicted expanded alert-episode ratio", band)
    reach, line = guard_reach(ev, t, gap)
    return Check(check.name, check.outcome, check.value, check.threshold, check.comparison, {**check.data, "guard": reach},
                 f"{check.detail}; {line}" if line else check.detail)


GUARD_HORIZON_DAYS = 60  # the stage length the guard's reach is reported against (as the calibration bench)


def guard_reach(ev: ShadowEvidence, t: Thresholds, gap_s: float) -> tuple[dict[str, Any], str]:
    """What this baseline lets the guard see: days until it would demote a tripled or a
    thirded alert rate (at expected counts), and, when a tripling would go unseen for
    GUARD_HORIZON_DAYS, how many more manual days would let it see one."""
    per_day = ev.baseline_camera_hours / ev.window_days if ev.window_days > 0 else 0.0
    if ev.baseline_sightings <= 0 or per_day <= 0:
        return {}, ""
    up, down = (days_to_demote(ev.baseline_sightings, ev.baseline_camera_hours, per_day, gap_s, t, r) for r in (3.0, 1 / 3))
    reach: dict[str, Any] = {"baseline_episodes": ev.baseline_sightings, "days_to_demote_3x": up,
                             "days_to_demote_third": down, "horizon_days": GUARD_HORIZON_DAYS}

    def when(days: int | None) -> str:
        return f"in ~{days} days" if days is not None else "not within a year"

    line = (f"the guard on this baseline ({ev.baseline_sightings} bear episodes) would demote a tripled alert rate "
            f"{when(up)}, a third of it {when(down)} (at expected counts)")
    if up is None or up > GUARD_HORIZON_DAYS:
        more = baseline_days_needed(ev.baseline_sightings, ev.baseline_camera_hours, per_day, t, 3.0, GUARD_HORIZON_DAYS)
        reach["more_manual_days_for_3x"] = more
        line += (f"; ~{more} more manual days would let it catch a tripling within {GUARD_HORIZON_DAYS} days"
                 if more is not None else f"; no manual period under a year more lets it catch a tripling within "
                 f"{GUARD_HORIZON_DAYS} days at this site's rate")
    return reach, line


def manual_gate_checks(ev: ShadowEvidence, t: Thresholds) -> list[Check]:
    window = check_at_least("shadow_window_days", ev.window_days, t.shadow_days, {}, " days")
    checks = [window]
    if ev.sightings is None:
        ev = ShadowEvidence(**{**ev.__dict__, "sightings": sighting_report([], t.alert_cooldown_s, 0.0)})
    rep = ev.sightings
    assert rep is not None
    days = max(ev.window_days, 1e-9)
    checks += [
        check_at_least("audited_frames", ev.audited_frames, t.min_reviewed,
                       {"audited": ev.audited_frames, "unflagged": ev.unflagged_frames}),
        check_sightings(rep, t),
        check_sighting_recall(ev, t),
        estimate_check("alert_precision", rep.precision, t.min_precision_lower, unit=" of alerts", plan_unit="reviewed alerts",
                       per_day=rep.reviewed_alerts / days, extra={"unit": "alerts", "unreviewed": rep.unreviewed_alerts}),
        check_predicted_ratio(ev, t),
        check_no_drift_alarm(ev.drift_checks, ev.drift_alarms),
        check_cameras_healthy(ev.cameras_enabled, ev.cameras_online, ev.cameras_unknown),
    ]
    return checks


def check_trial_finished(ev: TrialEvidence, t: Thresholds) -> Check:
    data = {"elapsed_days": ev.elapsed_days, "planned_days": ev.trial_days, "finished": ev.finished}
    if ev.finished and ev.elapsed_days >= t.trial_days:
        return Check("trial_finished", GateOutcome.PASS, ev.elapsed_days, t.trial_days, ">=", data,
                     f"trial ran {ev.elapsed_days:.1f} days")
    return Check("trial_finished", GateOutcome.INCONCLUSIVE, ev.elapsed_days, t.trial_days, ">=", data,
                 f"trial at {ev.elapsed_days:.1f} days, needs {t.trial_days:g} and its window to end")


def check_confirmed_share(ev: TrialEvidence, t: Thresholds) -> Check:
    est = precision_estimate(ev.alerts_confirmed, ev.alerts_reviewed)
    return estimate_check("confirmed_share", est, t.min_confirmed_share, unit=" of alerts", plan_unit="reviewed alerts",
                          extra={"confirmed": ev.alerts_confirmed, "reviewed": ev.alerts_reviewed, "unit": "alerts"})


def check_missed_bears(ev: TrialEvidence, t: Thresholds) -> Check:
    outcome = GateOutcome.PASS if ev.missed_bears <= t.max_missed_bears else GateOutcome.FAIL
    return Check("missed_bears", outcome, float(ev.missed_bears), t.max_missed_bears, "<=", {"missed": ev.missed_bears},
                 f"{ev.missed_bears} bear(s) reported missed, at most {t.max_missed_bears}")


def rate_data(rate: RateRatio) -> dict[str, Any]:
    def finite(x: float) -> float | None:
        return x if math.isfinite(x) else None

    # "alerts" and "baseline_sightings" count episodes (shadow.alert_rates); the keys stay for older ledger rows
    return {"alerts": rate.x1, "camera_hours": rate.t1, "baseline_sightings": rate.x0, "baseline_camera_hours": rate.t0,
            "unit": "episodes",
            "ratio": finite(rate.ratio), "ci_low": finite(rate.ci.low), "ci_high": finite(rate.ci.high),
            "p_outside": rate.p_outside, "low": rate.low, "high": rate.high}


def check_alert_rate_ratio(rate: RateRatio | None, t: Thresholds) -> Check:
    """The trial's alert rate against the manual baseline, by :func:`check_band`."""
    band = t.alert_ratio_high
    if rate is None:
        return Check("alert_rate_ratio", GateOutcome.INCONCLUSIVE, None, band, "inside", {},
                     "no manual baseline (no camera-hours in the manual period)")
    line_data = rate_data(rate)
    check = check_band("alert_rate_ratio", rate.x1, rate.t1, rate.x0, rate.t0, t, line_data, "alert-episode rate ratio",
                       (rate.low, rate.high))
    detail = (f"{check.detail}; {rate.x1} alert episodes / {rate.t1:.0f} camera-h vs {rate.x0} bear episodes / "
              f"{rate.t0:.0f} camera-h")
    return Check(check.name, check.outcome, check.value, check.threshold, check.comparison, check.data, detail)


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
    model_set = session.scalar(
        sa.select(sa.func.min(StageChange.changed_at))
        .where(StageChange.site_id == site.id, StageChange.model_version_id == site.rollout_model_id)
    ) if site.rollout_model_id is not None else None
    return max(site.stage_since, model_set) if model_set is not None else site.stage_since


def shadow_evidence(session: Session, site: Site, now: datetime) -> ShadowEvidence:
    start = shadow_window_start(session, site)
    checks, alarms = drift_counts(session, site, start, now)
    enabled, online, unknown = camera_counts(session, site)
    evidence = site_sightings(session, site, start, now)
    t = thresholds_of(site)
    baseline = baseline_exposure(session, site, Period(Stage.MANUAL, start, now, site.rollout_model_id), t)
    return ShadowEvidence(
        _days(start, now), checks, alarms, enabled, online, unknown,
        sightings=evidence.report if evidence else None, baseline_sightings=baseline.events,
        baseline_camera_hours=baseline.hours, baseline_gap_s=baseline.gap_s,
        audited_frames=evidence.audited_frames if evidence else 0,
        unflagged_frames=evidence.unflagged_scored if evidence else 0,
    )


def trial_evidence(session: Session, site: Site, now: datetime, t: Thresholds) -> TrialEvidence:
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
    """Missed sightings in [start, end]: sightings (shadow.sightings) with no flag of the
    site's model, found by the audit or reported, on the trial scope's cameras and hours."""
    evidence = site_sightings(session, site, start, end, count_scored=False)
    if evidence is None:
        return 0
    scope = trial_scope_of(site)
    misses = evidence.report.misses_found + evidence.report.misses_reported
    return sum(scope.keeps((m.camera_id, m.start, None)) for m in misses)


def evaluate_gate(session: Session, site: Site, now: datetime) -> GateResult:
    """The gate out of the site's current stage, evaluated on the data up to ``now``."""
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
