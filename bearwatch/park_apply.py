"""Applying a park configuration file to the database (idempotent: run it again after edits)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from bearwatch.db import write_transaction
from bearwatch.errors import ConfigError
from bearwatch.files import sha256_file
from bearwatch.park_file import ParkConfig
from bearwatch.schema import AlertChannel, Camera, ModelRole, Site, utcnow
from inference.model_versions import registered
from inference.registry import PreparedModel, add_model, prepare_model, register_model
from ingest.cameras import add_camera
from shadow.delivery import shown_url
from shadow.sites import add_site, get_site, set_rollout_model


@dataclass
class ApplyReport:
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)


def apply_park(factory: sessionmaker[Session], config: ParkConfig, *, actor: str) -> ApplyReport:
    """apply_config as one write transaction, at the time it opens; the models it must
    register are loaded before (seconds to minutes that must not hold the write lock)."""
    with factory() as session:
        new = [m for m in config.models if m.path.is_file()
               and registered(session, m.name, sha256_file(m.path.resolve())) is None]
    prepared = [prepare_model(m.path, name=m.name, positive=m.positive, threshold=m.threshold, role=m.role,
                              reference_dir=m.reference) for m in new]
    with write_transaction(factory) as session:
        return apply_config(session, config, actor=actor, now=utcnow(), prepared=prepared)


def apply_config(
    session: Session, config: ParkConfig, *, actor: str, now: datetime, prepared: Sequence[PreparedModel] = ()
) -> ApplyReport:
    """``prepared``: models loaded beforehand (apply_park); any other new model is loaded
    here. ``now``: when a site gets its rollout model (the ledger row's time)."""
    report = ApplyReport()
    _apply_sites(session, config, report, actor=actor)
    _apply_models(session, config, report, actor=actor, now=now, prepared=prepared)
    _apply_channels(session, config, report)
    return report


def _apply_sites(session: Session, config: ParkConfig, report: ApplyReport, *, actor: str) -> None:
    """Sites and their cameras by name: new ones are added, changed thresholds, time zones
    and camera settings updated."""
    for site_cfg in config.sites:
        site = session.scalar(sa.select(Site).where(Site.name == site_cfg.name))
        if site is None:
            site = add_site(session, site_cfg.name, actor=actor, thresholds=site_cfg.thresholds)
            report.created.append(f"site {site.name}")
        elif site.thresholds != site_cfg.thresholds.model_dump():
            site.thresholds = site_cfg.thresholds.model_dump()
            report.updated.append(f"site {site.name} thresholds")
        zone_name = site_cfg.timezone or config.timezone
        if site.timezone != zone_name:
            if f"site {site.name}" not in report.created:
                report.updated.append(f"site {site.name} time zone {zone_name}")
            site.timezone = zone_name
        for cam_cfg in site_cfg.cameras:
            camera = session.scalar(sa.select(Camera).where(Camera.site_id == site.id, Camera.name == cam_cfg.name))
            if camera is None:
                add_camera(session, site, cam_cfg.name, cam_cfg.source, interval_s=cam_cfg.interval, enabled=cam_cfg.enabled)
                report.created.append(f"camera {site.name}/{cam_cfg.name}")
            elif (camera.source, camera.interval_s, camera.enabled) != (cam_cfg.source, cam_cfg.interval, cam_cfg.enabled):
                camera.source, camera.interval_s, camera.enabled = cam_cfg.source, cam_cfg.interval, cam_cfg.enabled
                report.updated.append(f"camera {site.name}/{cam_cfg.name}")


def _apply_models(
    session: Session, config: ParkConfig, report: ApplyReport, *, actor: str, now: datetime,
    prepared: Sequence[PreparedModel],
) -> None:
    """Models by name and file digest: a new file is registered (from ``prepared`` when it
    was loaded beforehand), and a rollout model becomes its sites' rollout model."""
    ready = {(p.name, p.sha256): p for p in prepared}
    for model_cfg in config.models:
        digest = sha256_file(model_cfg.path.resolve()) if model_cfg.path.is_file() else None
        model = registered(session, model_cfg.name, digest) if digest else None
        if model is None:
            loaded = ready.get((model_cfg.name, digest or ""))
            model = add_model(session, loaded) if loaded else register_model(
                session, model_cfg.path, name=model_cfg.name, positive=model_cfg.positive,
                threshold=model_cfg.threshold, role=model_cfg.role, reference_dir=model_cfg.reference,
            )
            report.created.append(f"model {model.name} (id {model.id})")
        for site_name in model_cfg.sites if model_cfg.role is ModelRole.ROLLOUT else []:
            site = get_site(session, site_name)
            if site.rollout_model_id != model.id:
                set_rollout_model(session, site, model, actor=actor, now=now)
                report.updated.append(f"site {site.name} rollout model {model.name}")


def _apply_channels(session: Session, config: ParkConfig, report: ApplyReport) -> None:
    """Alert channels by name; a channel no longer in the file is disabled, not deleted
    (its delivery history stays)."""
    known_sites = set(session.scalars(sa.select(Site.name)))
    for cfg in config.alerts.channels:
        unknown = sorted(set(cfg.sites) - known_sites)
        if unknown:
            raise ConfigError(f"alert channel {cfg.name!r} names unknown site(s): {', '.join(unknown)}")
        channel = session.scalar(sa.select(AlertChannel).where(AlertChannel.name == cfg.name))
        wanted = (cfg.kind, cfg.url, cfg.format, list(cfg.sites), cfg.enabled)
        if channel is None:
            session.add(AlertChannel(name=cfg.name, kind=cfg.kind, url=cfg.url, format=cfg.format, sites=list(cfg.sites),
                                     enabled=cfg.enabled))
            report.created.append(f"alert channel {cfg.name} ({cfg.kind.value} {shown_url(cfg.url)})")
        elif (channel.kind, channel.url, channel.format, list(channel.sites or []), channel.enabled) != wanted:
            channel.kind, channel.url, channel.format = cfg.kind, cfg.url, cfg.format
            channel.sites, channel.enabled = list(cfg.sites), cfg.enabled
            report.updated.append(f"alert channel {cfg.name}")
    in_file = {c.name for c in config.alerts.channels}
    for channel in session.scalars(sa.select(AlertChannel).where(AlertChannel.enabled.is_(True))):
        if channel.name not in in_file:
            channel.enabled = False
            report.updated.append(f"alert channel {channel.name} disabled (not in the park file)")
