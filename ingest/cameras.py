"""Registering cameras and switching them on and off (admin acts; the role is checked
here, in the service, so hiding a button is never the only guard)."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.orm import Session

from bearwatch.auth import Actor, require_role
from bearwatch.errors import AlreadyExists, ConfigError, NotFound
from bearwatch.redact import redact_url
from bearwatch.schema import Camera, Role, Site


def add_camera(session: Session, site: Site, name: str, source: str, *, interval_s: float, enabled: bool = True) -> Camera:
    if interval_s <= 0:
        raise ConfigError(f"camera {name!r}: interval must be a positive number of seconds, got {interval_s}")
    exists = session.scalar(sa.select(Camera.id).where(Camera.site_id == site.id, Camera.name == name))
    if exists is not None:
        raise AlreadyExists(f"site {site.name!r} already has a camera named {name!r}")
    camera = Camera(site_id=site.id, name=name, source=source, interval_s=interval_s, enabled=enabled)
    session.add(camera)
    session.flush()
    return camera


def describe_source(camera: Camera) -> str:
    """The source as it may be shown anywhere: credentials masked."""
    return redact_url(camera.source)


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
