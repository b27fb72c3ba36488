"""Admin acts the dashboard offers: switching cameras on and off, a model's role and
threshold. Each checks the actor's role here, in the service, so hiding a button is
never the only guard.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session

from bearwatch.auth import Actor, require_role
from bearwatch.errors import ConfigError, NotFound
from bearwatch.schema import Camera, ModelRole, ModelVersion, Role, Site, Stage
from shadow.rollout import record_stage_change


def set_camera_enabled(session: Session, actor: Actor, camera_id: int, enabled: bool) -> Camera:
    """Enable or disable a camera; ingest samples only enabled cameras (it picks the
    change up when its scheduler next loads the camera list)."""
    require_role(actor, Role.ADMIN, "enable or disable cameras")
    camera = session.get(Camera, camera_id)
    if camera is None:
        raise NotFound(f"no camera with id {camera_id}")
    camera.enabled = enabled
    session.flush()
    return camera


def _model(session: Session, model_id: int) -> ModelVersion:
    model = session.get(ModelVersion, model_id)
    if model is None:
        raise NotFound(f"no model version with id {model_id}")
    return model


def _sites_using(session: Session, model_id: int) -> list[Site]:
    # Locked: a stage change may follow (record_stage_change wants the row held).
    query = sa.select(Site).where(Site.rollout_model_id == model_id).order_by(Site.name).with_for_update()
    return list(session.scalars(query))


def set_model_role(session: Session, actor: Actor, model_id: int, role: ModelRole) -> ModelVersion:
    """A model that some site rolls out cannot be retired until the site has another one."""
    require_role(actor, Role.ADMIN, "change a model's role")
    model = _model(session, model_id)
    if role is ModelRole.RETIRED:
        using = _sites_using(session, model_id)
        if using:
            raise ConfigError(
                f"model {model.name} (id {model.id}) is the rollout model of {', '.join(s.name for s in using)}; "
                "give those sites another rollout model before retiring it"
            )
    model.role = role
    session.flush()
    return model


def set_model_threshold(
    session: Session, actor: Actor, model_id: int, threshold: float, *, now: datetime
) -> ModelVersion:
    """A new threshold must pass the gates again (design.md section 5): every site that
    rolls this model out beyond manual goes back to manual, with a ledger row."""
    require_role(actor, Role.ADMIN, "change a model's threshold")
    if not 0.0 < threshold < 1.0:
        raise ConfigError(f"threshold must be between 0 and 1 (exclusive), got {threshold}")
    model = _model(session, model_id)
    if threshold == model.threshold:
        return model
    previous = model.threshold
    model.threshold = threshold
    for site in _sites_using(session, model_id):
        if site.stage is not Stage.MANUAL:
            record_stage_change(
                session, site, Stage.MANUAL, actor=actor.name, now=now,
                reason=f"threshold of {model.name} changed from {previous:g} to {threshold:g}; gates start again",
            )
    session.flush()
    return model
