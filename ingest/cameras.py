"""Registering cameras (an admin act)."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.orm import Session

from bearwatch.errors import AlreadyExists, ConfigError
from bearwatch.redact import redact_url
from bearwatch.schema import Camera, Site


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
