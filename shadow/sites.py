"""Sites and the model their rollout stage applies to."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.orm import Session

from bearwatch.config import Thresholds
from bearwatch.errors import AlreadyExists, NotFound
from bearwatch.schema import ModelVersion, Site, Stage, StageChange, utcnow


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
    session.add(
        StageChange(
            site_id=site.id, from_stage=None, to_stage=Stage.MANUAL, actor=actor,
            reason="site created", thresholds=site.thresholds,
        )
    )
    return site


def set_rollout_model(session: Session, site: Site, model: ModelVersion, *, actor: str) -> None:
    """A new rollout model starts again in shadow: the site goes back to manual."""
    if site.rollout_model_id == model.id:
        return
    previous = site.stage
    site.rollout_model_id = model.id
    if previous is not Stage.MANUAL:
        site.stage = Stage.MANUAL
        site.trial_start = site.trial_end = None
        site.stage_since = utcnow()
    session.add(
        StageChange(
            site_id=site.id, from_stage=previous, to_stage=Stage.MANUAL, actor=actor,
            reason=f"rollout model set to {model.name} (id {model.id}); gates start again",
            model_version_id=model.id, thresholds=site.thresholds,
        )
    )
