"""The Rollout page: every site's stage, time in stage and trial window; one site's next
gate (shadow.gates.evaluate_gate: each check's value against its threshold, with the
unit, method and bounds its data names and, for an inconclusive check, the gate's plan:
how much more evidence would decide it and the audit workload that implies; it reads
the whole manual period, so it is evaluated for the chosen site only); the ledger
(shadow.promotion.ledger)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session

from bearwatch.humanize import duration_text
from bearwatch.localtime import utc_hours_text
from bearwatch.schema import Camera, ModelVersion, Site, Stage
from shadow.gates import Check, GateOutcome, GateResult, evaluate_gate
from shadow.promotion import LedgerRow, ledger


@dataclass(frozen=True)
class SiteRollout:
    site: str
    stage: Stage
    stage_since: datetime
    trial_start: datetime | None
    trial_end: datetime | None
    trial_scope: str  # for people: "all cameras, all hours" or the limits
    model: str | None
    cameras: tuple[str, ...]


def scope_text(scope: dict | None, camera_names: dict[int, str], zone_name: str | None, now: datetime) -> str:
    """A limited trial's place and time box; its hours in the site's clock and in UTC."""
    scope = scope or {}
    cams = [camera_names.get(int(c), str(c)) for c in scope.get("cameras") or []]
    hours = [int(h) for h in scope.get("hours") or []]
    return (f"cameras {', '.join(cams)}" if cams else "all cameras") + ", " + (
        f"hours {utc_hours_text(hours, zone_name, now)}" if hours else "all hours")


def site_rollouts(session: Session, now: datetime, site: str | None = None) -> tuple[SiteRollout, ...]:
    """Every site (or the one named) with its rollout model and cameras, in two queries
    whatever the number of sites."""
    query = sa.select(Site, ModelVersion.name).outerjoin(ModelVersion, ModelVersion.id == Site.rollout_model_id).order_by(Site.name)
    if site:
        query = query.where(Site.name == site)
    sites = session.execute(query).all()
    cameras: dict[int, dict[int, str]] = {s.id: {} for s, _ in sites}
    if sites:
        for site_id, camera_id, name in session.execute(
            sa.select(Camera.site_id, Camera.id, Camera.name).where(Camera.site_id.in_(cameras)).order_by(Camera.name)
        ):
            cameras[site_id][camera_id] = name
    return tuple(
        SiteRollout(
            site=s.name, stage=s.stage, stage_since=s.stage_since, trial_start=s.trial_start, trial_end=s.trial_end,
            trial_scope=scope_text(s.trial_scope, cameras[s.id], s.timezone, now) if s.stage is Stage.LIMITED else "", model=model,
            cameras=tuple(cameras[s.id].values()),
        )
        for s, model in sites
    )


def site_gate(session: Session, site: str, now: datetime) -> GateResult | None:
    """The gate out of the site's stage now; None for expanded (the last stage) or an unknown site."""
    s = session.scalar(sa.select(Site).where(Site.name == site))
    if s is None or s.stage is Stage.EXPANDED:
        return None
    return evaluate_gate(session, s, now)


# The unit of the checks whose data does not name one (counts against a minimum, the
# trial's alert-rate ratio).
CHECK_UNITS = {
    "shadow_window_days": "days", "trial_finished": "days", "audited_frames": "audited frames",
    "alerts_reviewed": "reviewed alerts", "missed_bears": "sightings", "alert_rate_ratio": "alerts / sightings per camera-hour",
    "no_drift_alarm": "drift alarms", "cameras_healthy": "cameras",
}


@dataclass(frozen=True)
class CheckRow:
    """One gate check as the page shows it."""

    check: str
    outcome: GateOutcome
    value: float | None
    shown: str  # the value for people: "2 h 30 min", "0.93 [0.88, 0.96]", "51"
    needs: str  # e.g. ">= 0.9", ">= 14 d"
    unit: str  # what is counted: sightings, alerts, days, ...
    method: str  # how the figure and its bounds were made ("" for plain counts)
    bounds: str  # the 95% bounds, "low – high" ("" when the check has none)
    plan: str  # inconclusive: what would decide it ("" otherwise)
    detail: str


def _days(days: float) -> str:
    return "under a day" if days < 1 else f"~{days:.0f} day{'s' if round(days) != 1 else ''}"


def plan_text(check: Check) -> str:
    """What would decide an inconclusive check, from the plan the gate stored in its data
    (more evidence, the days that takes at current rates, the audit rate that would decide
    it within the window and the rangers' audited frames per day it implies); for a count
    below its minimum, how many more."""
    if check.outcome is not GateOutcome.INCONCLUSIVE:
        return ""
    plan = check.data.get("plan")
    if not isinstance(plan, dict):
        if check.comparison == ">=" and check.value is not None and check.value < check.threshold:
            short = check.threshold - check.value
            if unit_of(check) == "days":
                return f"{duration_text(short * 86_400)} more"
            return f"{_number(short)} more {unit_of(check)}"
        return ""
    unit = plan.get("unit") or unit_of(check)
    more = plan.get("more")
    parts = [f"no amount of {unit} at the observed share decides it" if more is None else f"about {more} more {unit}"]
    days = plan.get("days")
    if more is not None and isinstance(days, (int, float)):
        parts[0] += f" ({_days(float(days))} at current rates)"
    audit = plan.get("audit")
    if isinstance(audit, dict):
        horizon = audit.get("horizon_days")
        within = f" within {horizon:.0f} days" if isinstance(horizon, (int, float)) else ""
        rate = audit.get("audit_rate")
        if rate is None:
            parts.append(f"no audit rate decides it{within} at the current sighting rate")
        else:
            per_day = audit.get("audited_frames_per_day")
            workload = f": the rangers review ~{per_day:.0f} audited frames/day" if isinstance(per_day, (int, float)) else ""
            parts.append(f"an audit of {rate:.0%} of unflagged frames in every stratum decides it{within}{workload}")
    return "; ".join(parts)


def unit_of(check: Check) -> str:
    unit = check.data.get("unit")
    return str(unit) if unit else CHECK_UNITS.get(check.name, "")


def _bounds(data: dict) -> str:
    low, high = data.get("ci_low"), data.get("ci_high")
    if not isinstance(low, (int, float)):
        return ""
    return f"{low:.3g} – {high:.3g}" if isinstance(high, (int, float)) else f"{low:.3g} – ∞"


def _number(x: float) -> str:
    return f"{x:.0f}" if float(x).is_integer() else f"{x:.2f}" if abs(x) < 10 else f"{x:.3g}"


def value_text(check: Check) -> str:
    """The check's figure for people: a span in days and hours, a count as a whole
    number, an estimate with its 95% bounds (``0.93 [0.88, 0.96]``)."""
    if check.value is None:
        return "no data"
    if unit_of(check) == "days":
        return duration_text(check.value * 86_400)
    low, high = check.data.get("ci_low"), check.data.get("ci_high")
    if isinstance(low, (int, float)):
        def est(x: float) -> str:  # one format for an estimate and its bounds
            return f"{x:.2f}" if abs(x) < 10 else f"{x:.3g}"

        upper = est(high) if isinstance(high, (int, float)) else "∞"
        return f"{est(check.value)} [{est(low)}, {upper}]"
    return _number(check.value)


def needs_text(check: Check) -> str:
    limit = duration_text(check.threshold * 86_400) if unit_of(check) == "days" else _number(check.threshold)
    return f"{check.comparison} {limit}"


def check_rows(gate: GateResult) -> tuple[CheckRow, ...]:
    return tuple(
        CheckRow(check=c.name, outcome=c.outcome, value=c.value, shown=value_text(c), needs=needs_text(c),
                 unit=unit_of(c), method=str(c.data.get("method") or ""), bounds=_bounds(c.data), plan=plan_text(c),
                 detail=c.detail)
        for c in gate.checks
    )


def ledger_rows(session: Session, *, site: str | None = None, limit: int = 200) -> list[LedgerRow]:
    """The rollout ledger, newest first (of one site, or all)."""
    return ledger(session, site, limit)
