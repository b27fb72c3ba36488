"""Registered model versions as rows: looking one up (by id, or by name and file digest),
the sites that roll it out, and an admin's change of its role. Light (no torch): the dashboard imports it.

The role is checked here, in the service, so hiding a button is never the only guard.
A model's threshold is shadow.sites.set_model_threshold: it restarts the sites' gates.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.orm import Session

from bearwatch.auth import Actor, require_role
from bearwatch.errors import AlreadyExists, ConfigError, NotFound
from bearwatch.schema import ModelRole, ModelVersion, Role, Site


def get_model_version(session: Session, model_id: int) -> ModelVersion:
    model = session.get(ModelVersion, model_id)
    if model is None:
        raise NotFound(f"no model version with id {model_id}")
    return model


def registered(session: Session, name: str, sha256: str) -> ModelVersion | None:
    return session.scalar(sa.select(ModelVersion).where(ModelVersion.name == name, ModelVersion.sha256 == sha256))


def refuse_registered(session: Session, name: str, sha256: str) -> None:
    """AlreadyExists when this name and file are registered (checked before a long load, and
    again in the write transaction that adds the version)."""
    existing = registered(session, name, sha256)
    if existing is not None:
        raise AlreadyExists(f"model {name!r} with this file is already registered (id {existing.id})")


def sites_rolling_out(session: Session, model_id: int) -> list[Site]:
    """The sites whose rollout model this is, by name, their rows locked (FOR UPDATE on
    PostgreSQL) until the transaction ends: a stage change may follow."""
    query = sa.select(Site).where(Site.rollout_model_id == model_id).order_by(Site.name).with_for_update()
    return list(session.scalars(query))


def set_model_role(session: Session, actor: Actor, model_id: int, role: ModelRole) -> ModelVersion:
    """A model that some site rolls out cannot be retired until the site has another one."""
    require_role(actor, Role.ADMIN, "change a model's role")
    model = get_model_version(session, model_id)
    if role is ModelRole.RETIRED:
        using = sites_rolling_out(session, model_id)
        if using:
            raise ConfigError(
                f"model {model.name} (id {model.id}) is the rollout model of {', '.join(s.name for s in using)}; "
                "give those sites another rollout model before retiring it"
            )
    model.role = role
    session.flush()
    return model
