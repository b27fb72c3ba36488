"""Sampling every enabled camera on its interval with APScheduler 3.x."""

from __future__ import annotations

import logging

import sqlalchemy as sa
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from sqlalchemy.orm import Session, sessionmaker

from bearwatch.schema import Camera, utcnow
from ingest.sampler import sample_camera
from ingest.store import FrameStore

log = logging.getLogger(__name__)


def start_ingest(factory: sessionmaker[Session], store: FrameStore, *, threads: int = 8) -> BackgroundScheduler:
    """Start one job per enabled camera, first sample now: one sample at a time per
    camera (max_instances=1), missed runs collapse into one (coalesce), and a run more
    than one interval late is skipped rather than bunched up."""
    scheduler = BackgroundScheduler(executors={"default": ThreadPoolExecutor(threads)}, timezone="UTC")
    with factory() as session:
        cameras = session.execute(sa.select(Camera.id, Camera.interval_s).where(Camera.enabled)).all()
    for camera_id, interval_s in cameras:
        scheduler.add_job(
            sample_camera, "interval", args=(factory, store, camera_id), seconds=interval_s,
            id=f"camera-{camera_id}", max_instances=1, coalesce=True,
            misfire_grace_time=max(1, int(interval_s)), next_run_time=utcnow(),
        )
    scheduler.start()
    log.info("sampling %d cameras", len(cameras))
    return scheduler
