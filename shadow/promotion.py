"""Stage changes asked for by people: promotion (ops, on a passing gate; an admin may
override with a written reason) and demotion (ops, always allowed). Both lock the site
row and write the ledger through shadow.rollout.record_stage_change with the evidence.

At the end of a limited trial nothing happens by itself: flags after trial_end behave
as in manual, and the site waits for ops to promote or demote it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from bearwatch.auth import Actor, require_role
from bearwatch.errors import ConfigError, GateNotPassed, InvalidTransition, NotFound
from bearwatch.schema import Camera, Role, Site, Stage, StageChange
from shadow import gates
from shadow.gates import GateOutcome, GateResult
from shadow.periods import thresholds_of
from shadow.rollout import NEXT_STAGE, is_demotion, is_promotion, record_stage_change

GateEvaluator = Callable[[Session, Site, datetime], GateResult]


@dataclass(frozen=True)
class TrialScope:
    """The limited trial's cameras (names) and hours of day (UTC); empty means all."""

    cameras: tuple[str, ...] = ()
    hours: tuple[int, ...] = ()


def parse_hours(text: str) -> tuple[int, ...]:
    """'20-6' -> 20..23, 0..6 (wrapping midnight); '8,9,12-14' -> 8, 9, 12, 13, 14."""
    hours: list[int] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        try:
            if "-" in part:
                first, last = (int(x) for x in part.split("-", 1))
                span = range(first, last + 1) if first <= last else [*range(first, 24), *range(0, last + 1)]
            else:
                first = last = int(part)
                span = [first]
        except ValueError:
            raise ConfigError(f"hours {text!r}: use hours 0-23 like '20-6' or '8,9,12-14'") from None
        if not (0 <= first <= 23 and 0 <= last <= 23):
            raise ConfigError(f"hours {text!r}: hours are 0-23")
        hours.extend(h for h in span if h not in hours)
    return tuple(hours)


def refusal_lines(result: GateResult) -> list[str]:
    """One line per failing or inconclusive check, for people."""
    lines = []
    for check in result.checks:
        if check.outcome is GateOutcome.PASS:
            continue
        value = "no data" if check.value is None else f"{check.value:g}"
        detail = f" ({check.detail})" if check.detail else ""
        lines.append(f"{check.outcome.value}: {check.name} = {value}, needs {check.comparison} {check.threshold:g}{detail}")
    return lines or [f"{result.outcome.value}: the gate has no passing checks yet"]


def _locked_site(session: Session, site: Site | str) -> Site:
    """The site row, locked until the transaction ends (FOR UPDATE on PostgreSQL; on
    SQLite the caller runs in write_transaction, which holds the write lock)."""
    name = site if isinstance(site, str) else site.name
    query = sa.select(Site).where(Site.name == name).execution_options(populate_existing=True)
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update()
    found = session.scalar(query)
    if found is None:
        raise NotFound(f"no site named {name!r}")
    return found


def _scope_ids(session: Session, site: Site, scope: TrialScope) -> dict[str, Any]:
    cameras = dict(session.execute(sa.select(Camera.name, Camera.id).where(Camera.site_id == site.id)).all())
    unknown = [c for c in scope.cameras if c not in cameras]
    if unknown:
        raise NotFound(f"site {site.name} has no camera(s) {', '.join(unknown)} (it has: {', '.join(sorted(cameras)) or 'none'})")
    return {"cameras": [cameras[c] for c in scope.cameras], "hours": list(scope.hours)}


def promote(
    session: Session, site: Site | str, actor: Actor, reason: str, now: datetime, *, override: bool = False,
    scope: TrialScope | None = None, evaluate: GateEvaluator | None = None, expected_stage: Stage | None = None,
) -> StageChange:
    """Move the site to its next stage if the gate passes (or an admin overrides it).

    ``expected_stage`` is the stage the caller saw when it decided: if someone else has
    changed the site since (another promotion, the guard), nothing happens, so that one
    click never promotes through a gate its user did not look at. ``evaluate``: the gate
    (default: shadow.gates.evaluate_gate, looked up at each call so tests can stand in for it)."""
    require_role(actor, Role.OPS, "promote a site")
    if override:
        require_role(actor, Role.ADMIN, "override a promotion gate")
        if not reason.strip():
            raise InvalidTransition("an override needs a written reason (--reason)")
    locked = _locked_site(session, site)
    if expected_stage is not None and locked.stage is not expected_stage:
        raise InvalidTransition(
            f"site {locked.name} is {locked.stage.value} now, not {expected_stage.value} as when you looked; "
            "nothing was changed: look at its gate again")
    to_stage = NEXT_STAGE.get(locked.stage)
    if to_stage is None:
        raise InvalidTransition(f"site {locked.name} is already {locked.stage.value}, the last stage")
    if scope is not None and to_stage is not Stage.LIMITED:
        raise InvalidTransition("cameras and hours limit the limited trial only; this promotion goes to expanded")
    result = (evaluate or gates.evaluate_gate)(session, locked, now)
    if result.outcome is not GateOutcome.PASS and not override:
        raise GateNotPassed(
            f"site {locked.name} stays {locked.stage.value}: the {locked.stage.value}->{to_stage.value} gate is "
            f"{result.outcome.value}; an admin may override the gate, giving a reason",
            refusal_lines(result),
        )
    evidence: dict[str, Any] = {"gate": result.as_evidence(), "override": override}
    trial = None
    if to_stage is Stage.LIMITED:
        trial = (now, now + timedelta(days=thresholds_of(locked).trial_days))
        locked.trial_scope = _scope_ids(session, locked, scope or TrialScope())
        evidence["trial"] = {"start": trial[0].isoformat(), "end": trial[1].isoformat(), "scope": locked.trial_scope}
    else:
        locked.trial_scope = {}
    return record_stage_change(session, locked, to_stage, actor=actor.name, reason=reason, now=now, evidence=evidence, trial=trial)


def demote(session: Session, site: Site | str, to_stage: Stage, actor: Actor, reason: str, now: datetime) -> StageChange:
    """Move the site to a lower stage; always allowed to ops (held alerts stay held for
    rangers to confirm or dismiss). Down to limited starts a new trial window, all
    cameras and hours."""
    require_role(actor, Role.OPS, "demote a site")
    locked = _locked_site(session, site)
    from_stage = locked.stage
    if not is_demotion(from_stage, to_stage):
        raise InvalidTransition(
            f"cannot demote {locked.name} from {from_stage.value} to {to_stage.value}: that is not a lower stage"
            + ("; moving up is a promotion, through the gate" if is_promotion(from_stage, to_stage) else "")
        )
    # Back to limited from expanded: a fresh supervised trial over all cameras and hours.
    trial = (now, now + timedelta(days=thresholds_of(locked).trial_days)) if to_stage is Stage.LIMITED else None
    change = record_stage_change(session, locked, to_stage, actor=actor.name, reason=reason, now=now,
                                 evidence={"demotion": True, "from": from_stage.value}, trial=trial)
    locked.trial_scope = {}
    return change


@dataclass(frozen=True)
class LedgerRow:
    site: str
    changed_at: datetime
    from_stage: Stage | None
    to_stage: Stage
    actor: str
    reason: str
    model_version_id: int | None
    evidence: dict[str, Any]


def ledger(session: Session, site: str | None = None, limit: int = 200) -> list[LedgerRow]:
    """Stage changes, newest first."""
    query = (
        sa.select(StageChange, Site.name).join(Site, Site.id == StageChange.site_id)
        .order_by(StageChange.changed_at.desc(), StageChange.id.desc()).limit(limit)
    )
    if site:
        query = query.where(Site.name == site)
    return [
        LedgerRow(name, c.changed_at, c.from_stage, c.to_stage, c.actor, c.reason, c.model_version_id, c.evidence or {})
        for c, name in session.execute(query)
    ]
