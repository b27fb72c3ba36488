"""The Rollout page: every site's stage, time in stage and trial window; one site's next
gate (shadow.gates.evaluate_gate: each check's value against its threshold; it reads
the whole manual period, so it is evaluated for the chosen site only); the ledger is
shadow.promotion.ledger."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session

from bearwatch.schema import Camera, ModelVersion, Site, Stage
from shadow.gates import GateResult, evaluate_gate


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


def _scope_text(scope: dict | None, camera_names: dict[int, str]) -> str:
    scope = scope or {}
    cams = [camera_names.get(int(c), str(c)) for c in scope.get("cameras") or []]
    hours = [int(h) for h in scope.get("hours") or []]
    return (f"cameras {', '.join(cams)}" if cams else "all cameras") + ", " + (
        f"hours {', '.join(map(str, hours))} UTC" if hours else "all hours")


def site_rollouts(session: Session, now: datetime, site: str | None = None) -> tuple[SiteRollout, ...]:
    query = sa.select(Site, ModelVersion.name).outerjoin(ModelVersion, ModelVersion.id == Site.rollout_model_id).order_by(Site.name)
    if site:
        query = query.where(Site.name == site)
    out = []
    for s, model in session.execute(query).all():
        cams = dict(session.execute(sa.select(Camera.id, Camera.name).where(Camera.site_id == s.id).order_by(Camera.name)).all())
        out.append(SiteRollout(
            site=s.name, stage=s.stage, stage_since=s.stage_since, trial_start=s.trial_start, trial_end=s.trial_end,
            trial_scope=_scope_text(s.trial_scope, cams) if s.stage is Stage.LIMITED else "", model=model,
            cameras=tuple(cams.values()),
        ))
    return tuple(out)


def site_gate(session: Session, site: str, now: datetime) -> GateResult | None:
    """The gate out of the site's stage now; None for expanded (the last stage) or an unknown site."""
    s = session.scalar(sa.select(Site).where(Site.name == site))
    if s is None or s.stage is Stage.EXPANDED:
        return None
    return evaluate_gate(session, s, now)
