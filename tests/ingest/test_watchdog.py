"""The hard watchdog: a capture thread that outlives its deadline is abandoned; a capture
process that outlives it is killed and replaced."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from bearwatch.errors import FrameError
from ingest.capture_pool import CapturePool
from ingest.sampler import CameraSampler, CameraSpec, Outcome, SamplerOptions
from ingest.store import FrameStore
from tests.ingest.helpers import CameraHTTP, camera, make_camera, silent_server


def test_a_trickling_http_camera_is_abandoned_by_the_watchdog(factory: sessionmaker[Session], tmp_path: Path) -> None:
    """Each byte arrives before the socket timeout, so only the watchdog ends the capture."""
    with CameraHTTP() as cam:
        source = cam.url("/trickle")
        camera_id = make_camera(factory, source, interval_s=0.5)
        spec = CameraSpec(camera_id, camera(factory, camera_id).site_id, source, 0.5)
        sampler = CameraSampler(
            factory, FrameStore(tmp_path / "frames"), spec, options=SamplerOptions(capture_timeout_s=1.0, watchdog_grace_s=0.5)
        )
        assert sampler.sample() is Outcome.FAILED
        assert "abandoned by the watchdog" in (camera(factory, camera_id).last_error or "")
        assert sampler.watchdog.hung() == 1
        sampler._retry_at = 0.0  # skip the backoff: the next attempt finds the capture still hung
        assert sampler.sample() is Outcome.FAILED
        assert "still hung" in (camera(factory, camera_id).last_error or "")


def test_a_capture_process_past_its_deadline_is_killed_and_replaced(demo_footage: dict[str, Path]) -> None:
    pool = CapturePool(1)
    try:
        with silent_server() as port:
            with pytest.raises(FrameError, match="its process was killed"):
                # FFmpeg would wait 30 s; the pool's deadline is 1 s
                pool.capture("rtsp", f"rtsp://127.0.0.1:{port}/x", timeout_s=30, deadline_s=1.0)
        assert pool.killed == 1
        frame = pool.capture("rtsp", str(next(iter(demo_footage.values()))), timeout_s=5, deadline_s=20)
        assert frame is not None and frame.shape == (240, 320, 3)  # a fresh process took over
    finally:
        pool.close()
