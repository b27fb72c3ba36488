"""The hard watchdog: a capture thread that outlives its deadline is abandoned; a capture
process that outlives it is killed and replaced."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from bearwatch.errors import FrameError
from ingest.capture_pool import CapturePool
from ingest.sampler import CameraSampler, CameraSpec, Outcome, SamplerOptions
from ingest.store import FrameStore
from tests.ingest.helpers import CameraHTTP, camera, make_camera, poll, silent_server


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


def test_closing_the_pool_ends_a_capture_in_flight_and_leaves_no_process() -> None:
    """Stopping ingest closes the pool: a capture stuck in a child (30 s deadline) ends at
    once, and no child process survives, busy or idle."""
    pool = CapturePool(2)
    outcome: list[BaseException] = []

    def stuck_capture() -> None:
        try:
            pool.capture("rtsp", f"rtsp://127.0.0.1:{port}/x", timeout_s=30, deadline_s=30)
        except BaseException as exc:  # noqa: BLE001 - recorded for the assertion
            outcome.append(exc)

    with silent_server() as port:
        capturing = threading.Thread(target=stuck_capture)
        capturing.start()
        assert poll(lambda: len(pool._children) == 1, timeout_s=20)
        children = [child.proc for child in pool._children]
        pool.close()
        capturing.join(timeout=10)
        assert not capturing.is_alive(), "the capture waited for its deadline"
    assert len(outcome) == 1 and isinstance(outcome[0], FrameError) and "died" in str(outcome[0])
    assert all(proc.poll() is not None for proc in children)
    with pytest.raises(FrameError, match="stopping"):
        pool.capture("rtsp", "rtsp://127.0.0.1:1/x", timeout_s=1, deadline_s=1)
