"""Sampling one camera once: capture, check, store the file, then commit the row."""

from __future__ import annotations

import enum
import logging

import cv2
import sqlalchemy as sa
from prometheus_client import Counter
from sqlalchemy.orm import Session, sessionmaker

from bearwatch.errors import FrameError
from bearwatch.redact import redact_text
from bearwatch.schema import Camera, CameraHealth, Frame, utcnow
from ingest.quality import frame_stats
from ingest.sources import read_frame
from ingest.store import FrameStore

log = logging.getLogger(__name__)

FRAMES_CAPTURED = Counter(
    "bearwatch_frames_captured_total", "Camera samples by outcome", ["site", "camera", "outcome"]
)
JPEG_QUALITY = 90
OFFLINE_AFTER_FAILURES = 3


class Outcome(str, enum.Enum):
    STORED = "stored"
    FAILED = "failed"


def sample_camera(factory: sessionmaker[Session], store: FrameStore, camera_id: int) -> Outcome:
    with factory() as session:
        camera = session.get(Camera, camera_id)
        if camera is None or not camera.enabled:
            return Outcome.FAILED
        site_id, source = camera.site_id, camera.source
    labels = (str(site_id), str(camera_id))
    try:
        bgr = read_frame(source)
        captured_at = utcnow()
        ok, jpeg = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        if not ok:
            raise FrameError("cannot encode the frame as JPEG")
        stats = frame_stats(bgr)
        stored = store.write(site_id, camera_id, captured_at, jpeg.tobytes())
    except (FrameError, OSError, cv2.error) as exc:
        _record_failure(factory, camera_id, redact_text(str(exc)))
        FRAMES_CAPTURED.labels(*labels, Outcome.FAILED.value).inc()
        return Outcome.FAILED
    try:
        with factory.begin() as session:
            session.add(
                Frame(
                    camera_id=camera_id, captured_at=captured_at, path=stored.path, sha256=stored.sha256,
                    size_bytes=stored.size_bytes, width=stats.width, height=stats.height,
                    brightness=stats.brightness, contrast=stats.contrast, sharpness=stats.sharpness,
                    is_night=stats.is_night,
                )
            )
            session.execute(
                sa.update(Camera).where(Camera.id == camera_id).values(
                    health=CameraHealth.ONLINE, last_frame_at=captured_at,
                    consecutive_failures=0, last_error=None,
                )
            )
    except BaseException:
        store.delete(stored.path)  # no file without a row either
        raise
    FRAMES_CAPTURED.labels(*labels, Outcome.STORED.value).inc()
    return Outcome.STORED


def _record_failure(factory: sessionmaker[Session], camera_id: int, error: str) -> None:
    log.warning("camera %d: %s", camera_id, error)
    with factory.begin() as session:
        camera = session.get(Camera, camera_id)
        if camera is None:
            return
        camera.consecutive_failures += 1
        camera.last_error = error[:1000]
        camera.health = (
            CameraHealth.OFFLINE if camera.consecutive_failures >= OFFLINE_AFTER_FAILURES else CameraHealth.DEGRADED
        )
