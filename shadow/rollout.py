"""The rollout stage as an explicit state machine, and the ledger it writes.

Who may ask for a change (gates, roles, overrides) is decided by the callers
(promotion, demotion, the guard); this module only knows which transitions exist and
records every change as one ledger row.
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


def check_transition(from_stage: Stage, to_stage: Stage) -> None:
    if not (is_promotion(from_stage, to_stage) or is_demotion(from_stage, to_stage)):
        allowed = [s.value for s in Stage if is_promotion(from_stage, s) or is_demotion(from_stage, s)]
        raise InvalidTransition(
            f"cannot go from {from_stage.value} to {to_stage.value}; from {from_stage.value} a site can go to "
            f"{', '.join(allowed) or 'nowhere'}"
        )


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
    """Move ``site`` to ``to_stage`` and write the ledger row (who, when, from, to,
    model version, thresholds, evidence). ``trial`` is the limited stage's window;
    leaving limited clears it. The caller holds the site row locked."""
    if not reason.strip():
        raise InvalidTransition("a stage change needs a reason")
    from_stage = site.stage
    check_transition(from_stage, to_stage)
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
        evidence=evidence or {}, changed_at=now,
    )
    session.add(change)
    session.flush()
    return change
