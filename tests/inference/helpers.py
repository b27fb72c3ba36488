"""Frames on disk and registered models for the inference tests."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import cv2
import numpy as np
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from bearwatch.demo.footage import DEMO_CAMERAS, render_frame
from bearwatch.schema import Frame, ModelRole, Site, utcnow
from inference.registry import register_model
from ingest.cameras import add_camera
from ingest.store import FrameStore
from shadow.sites import add_site

SPEC = DEMO_CAMERAS[0]


def store_images(factory: sessionmaker[Session], store: FrameStore, images: list[np.ndarray]) -> list[int]:
    """JPEG files in the store and pending frame rows for them, in order."""
    ids = []
    with factory.begin() as session:
        site = session.scalar(sa.select(Site).where(Site.name == "north")) or add_site(session, "north", actor="test")
        camera = site.cameras[0] if site.cameras else add_camera(session, site, "c", "x.avi", interval_s=5)
        base = utcnow()
        for i, bgr in enumerate(images):
            jpeg = cv2.imencode(".jpg", bgr)[1].tobytes()
            when = base + timedelta(milliseconds=i)
            stored = store.write(site.id, camera.id, when, jpeg)
            frame = Frame(camera_id=camera.id, captured_at=when, path=stored.path, sha256=stored.sha256,
                          size_bytes=stored.size_bytes, width=bgr.shape[1], height=bgr.shape[0])
            session.add(frame)
            session.flush()
            ids.append(frame.id)
    return ids


def store_frames_at(factory: sessionmaker[Session], store: FrameStore, times: list[float]) -> list[int]:
    return store_images(factory, store, [render_frame(SPEC, t) for t in times])


def register(
    factory: sessionmaker[Session], path: Path, name: str = "demo", role: ModelRole = ModelRole.ROLLOUT,
    threshold: float = 0.5, reference: Path | None = None,
) -> int:
    with factory.begin() as session:
        return register_model(session, path, name=name, positive=["bear"], role=role, threshold=threshold,
                              reference_dir=reference).id
