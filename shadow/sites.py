"""Sites, the model their rollout stage applies to, and that model's threshold: a new
model or a new threshold sends the sites back to manual through the state machine
(shadow.rollout)."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session

from bearwatch.auth import Actor, require_role
from bearwatch.errors import AlreadyExists, ConfigError, NotFound
from bearwatch.park_file import Thresholds
from bearwatch.schema import ModelVersion, Role, Site, Stage
from inference.model_versions import get_model_version, sites_rolling_out
from shadow.rollout import record_creation, record_restart, record_stage_change


def get_site(session: Session, name: str) -> Site:
    site = session.scalar(sa.select(Site).where(Site.name == name))
    if site is None:
        known = ", ".join(session.scalars(sa.select(Site.name).order_by(Site.name))) or "none yet"
        raise NotFound(f"no site named {name!r} (known sites: {known}); add it with `bearwatch site add`")
    return site


def add_site(
    session: Session, name: str, *, actor: str, thresholds: Thresholds | None = None
) -> Site:
    """A new site starts in manual; the ledger gets its first row."""
    if session.scalar(sa.select(Site.id).where(Site.name == name)) is not None:
        raise AlreadyExists(f"a site named {name!r} already exists")
    site = Site(
        name=name,
        stage=Stage.MANUAL,
        thresholds=thresholds.model_dump() if thresholds else Thresholds().model_dump(),
    )
    session.add(site)
    session.flush()
    record_creation(session, site, actor=actor)
    return site


def set_rollout_model(session: Session, site: Site, model: ModelVersion, *, actor: str, now: datetime) -> None:
    """A new rollout model starts again in shadow: the site goes (back) to manual through
    the state machine's restart (shadow.rollout.record_restart), with a ledger row at
    ``now``. Setting the model it already has changes nothing."""
    session.flush()
    session.refresh(site, with_for_update=True)  # the row is locked for the stage change (FOR UPDATE on PostgreSQL)
    if site.rollout_model_id == model.id:
        return
    record_restart(
        session, site, model.id, actor=actor, now=now,
        reason=f"rollout model set to {model.name} (id {model.id}); gates start again",
    )


def set_model_threshold(
    session: Session, actor: Actor, model_id: int, threshold: float, *, now: datetime
) -> ModelVersion:
    """A new threshold must pass the gates again (design.md section 5): every site that
    rolls this model out beyond manual goes back to manual, with a ledger row (an admin
    act: the role is checked here)."""
    require_role(actor, Role.ADMIN, "change a model's threshold")
    if not 0.0 < threshold < 1.0:
        raise ConfigError(f"threshold must be between 0 and 1 (exclusive), got {threshold}")
    model = get_model_version(session, model_id)
    if threshold == model.threshold:
        return model
    previous = model.threshold
    model.threshold = threshold
    for site in sites_rolling_out(session, model_id):
        if site.stage is not Stage.MANUAL:
            record_stage_change(
                session, site, Stage.MANUAL, actor=actor.name, now=now,
                reason=f"threshold of {model.name} changed from {previous:g} to {threshold:g}; gates start again",
            )
    session.flush()
    return model


def site_zones(session: Session) -> dict[str, str]:
    """Every site's time zone by site name (bearwatch.localtime)."""
    return {name: zone for name, zone in session.execute(sa.select(Site.name, Site.timezone))}
