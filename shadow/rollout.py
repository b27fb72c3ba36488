"""The rollout stage as an explicit state machine, and the ledger it writes.

Transitions: a promotion (to the next stage), a demotion (to any lower stage), and a
restart: a site given another rollout model starts again in manual from any stage,
manual included, so that the new model's shadow window and stage period begin then
(design.md section 5). Who may ask for a change (gates, roles, overrides) is decided by
the callers (promotion, demotion, the guard, shadow.sites.set_rollout_model); this module
only knows which transitions exist and records every change as one ledger row. It is
the only writer of ``stage_changes``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from bearwatch.errors import InvalidTransition
from bearwatch.schema import Site, Stage, StageChange

# The one promotion out of each stage.
NEXT_STAGE: dict[Stage, Stage] = {Stage.MANUAL: Stage.LIMITED, Stage.LIMITED: Stage.EXPANDED}
# Demotion may go to any lower stage.
_ORDER = {Stage.MANUAL: 0, Stage.LIMITED: 1, Stage.EXPANDED: 2}


def is_promotion(from_stage: Stage, to_stage: Stage) -> bool:
    return NEXT_STAGE.get(from_stage) is to_stage


def is_demotion(from_stage: Stage, to_stage: Stage) -> bool:
    return _ORDER[to_stage] < _ORDER[from_stage]


def check_transition(from_stage: Stage, to_stage: Stage, *, restart: bool = False) -> None:
    """Refuse a move that is no promotion or demotion; a ``restart`` (a new rollout model)
    goes to manual from any stage, manual included."""
    if restart and to_stage is Stage.MANUAL:
        return
    if not (is_promotion(from_stage, to_stage) or is_demotion(from_stage, to_stage)):
        allowed = [s.value for s in Stage if is_promotion(from_stage, s) or is_demotion(from_stage, s)]
        raise InvalidTransition(
            f"cannot go from {from_stage.value} to {to_stage.value}; from {from_stage.value} a site can go to "
            f"{', '.join(allowed) or 'nowhere'}"
        )


def record_creation(session: Session, site: Site, *, actor: str) -> StageChange:
    """The first ledger row of a new site (flushed, so its ``stage_since`` is set): it
    starts in manual, at ``stage_since``."""
    change = StageChange(
        site_id=site.id, from_stage=None, to_stage=Stage.MANUAL, actor=actor, reason="site created",
        model_version_id=site.rollout_model_id, thresholds=dict(site.thresholds or {}), changed_at=site.stage_since,
    )
    session.add(change)
    return change


def record_stage_change(
    session: Session,
    site: Site,
    to_stage: Stage,
    *,
    actor: str,
    reason: str,
    now: datetime,
    evidence: dict[str, Any] | None = None,
    trial: tuple[datetime, datetime] | None = None,
) -> StageChange:
    """Move ``site`` to ``to_stage`` (a promotion or a demotion) and write the ledger row
    (who, when, from, to, model version, thresholds, evidence). ``trial`` is the limited
    stage's window; leaving limited clears it. The caller holds the site row locked."""
    return _record(session, site, to_stage, actor=actor, reason=reason, now=now, evidence=evidence or {}, trial=trial)


def record_restart(
    session: Session, site: Site, model_version_id: int, *, actor: str, reason: str, now: datetime
) -> StageChange:
    """Give ``site`` another rollout model: it goes to manual from any stage (a manual ->
    manual row when it was in manual) and the ledger row, with ``evidence["restart"]``
    naming the previous and the new model, starts the new model's shadow window
    (shadow.gates.shadow_window_start) and stage period (shadow.periods.stage_periods).
    The trial window and scope are cleared. The caller holds the site row locked."""
    evidence = {"restart": {"previous_model_version_id": site.rollout_model_id, "model_version_id": model_version_id}}
    site.rollout_model_id = model_version_id
    site.trial_scope = {}
    return _record(session, site, Stage.MANUAL, actor=actor, reason=reason, now=now, evidence=evidence, trial=None,
                   restart=True)


def _record(
    session: Session, site: Site, to_stage: Stage, *, actor: str, reason: str, now: datetime,
    evidence: dict[str, Any], trial: tuple[datetime, datetime] | None, restart: bool = False,
) -> StageChange:
    if not reason.strip():
        raise InvalidTransition("a stage change needs a reason")
    from_stage = site.stage
    check_transition(from_stage, to_stage, restart=restart)
    site.stage = to_stage
    site.stage_since = now
    if to_stage is Stage.LIMITED:
        if trial is None:
            raise InvalidTransition("entering the limited stage needs a trial window (start, end)")
        site.trial_start, site.trial_end = trial
    elif from_stage is Stage.LIMITED:
        site.trial_start = site.trial_end = None
    change = StageChange(
        site_id=site.id, from_stage=from_stage, to_stage=to_stage, actor=actor, reason=reason,
        model_version_id=site.rollout_model_id, thresholds=dict(site.thresholds or {}),
        evidence=evidence, changed_at=now,
    )
    session.add(change)
    session.flush()
    return change
