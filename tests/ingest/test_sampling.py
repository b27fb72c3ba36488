"""Sampling real video files into the frame store and the database."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import cv2
import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from bearwatch.files import sha256_file
from bearwatch.schema import Camera, CameraHealth, Frame, FrameStatus
from ingest.cameras import add_camera
from ingest.sampler import Outcome, sample_camera
from ingest.scheduler import start_ingest
from ingest.store import FrameStore
from shadow.sites import add_site
from tests.conftest import wait_for


def _camera(factory: sessionmaker[Session], source: str, name: str = "cam", interval_s: float = 5.0) -> int:
    with factory.begin() as session:
        from bearwatch.schema import Site

        site = session.scalar(sa.select(Site).where(Site.name == "north")) or add_site(session, "north", actor="test")
        return add_camera(session, site, name, source, interval_s=interval_s).id


def test_a_sample_is_a_stored_jpeg_with_a_row_and_stats(
    factory: sessionmaker[Session], tmp_path: Path, demo_footage: dict[str, Path]
) -> None:
    store = FrameStore(tmp_path / "frames")
    camera_id = _camera(factory, str(next(iter(demo_footage.values()))))
    assert sample_camera(factory, store, camera_id) is Outcome.STORED
    with factory() as session:
        frame = session.scalars(sa.select(Frame)).one()
        camera = session.get(Camera, camera_id)
    assert frame.status is FrameStatus.PENDING
    path = store.absolute(frame.path)
    assert sha256_file(path) == frame.sha256 and path.stat().st_size == frame.size_bytes
    image = cv2.imread(str(path))
    assert image.shape == (frame.height, frame.width, 3) == (240, 320, 3)
    assert 0 < frame.brightness < 255 and frame.sharpness > 0
    assert camera is not None and camera.health is CameraHealth.ONLINE and camera.last_frame_at == frame.captured_at


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg is installed by `make test`")
def test_h264_footage_encoded_by_ffmpeg_is_sampled(
    factory: sessionmaker[Session], tmp_path: Path, demo_footage: dict[str, Path]
) -> None:
    h264 = tmp_path / "clip.mp4"
    subprocess.run(
        ["ffmpeg", "-loglevel", "error", "-y", "-i", str(next(iter(demo_footage.values()))),
         "-c:v", "libx264", "-pix_fmt", "yuv420p", str(h264)],
        check=True,
    )
    camera_id = _camera(factory, f"file://{h264}")
    assert sample_camera(factory, FrameStore(tmp_path / "frames"), camera_id) is Outcome.STORED


def test_a_failing_camera_goes_degraded_then_offline_with_a_redacted_error(
    factory: sessionmaker[Session], tmp_path: Path
) -> None:
    store = FrameStore(tmp_path / "frames")
    camera_id = _camera(factory, "rtsp://ranger:hunter2@127.0.0.1:1/stream")
    health = []
    for _ in range(3):
        assert sample_camera(factory, store, camera_id) is Outcome.FAILED
        with factory() as session:
            camera = session.get(Camera, camera_id)
            assert camera is not None
            health.append(camera.health)
    assert health == [CameraHealth.DEGRADED, CameraHealth.DEGRADED, CameraHealth.OFFLINE]
    assert camera.consecutive_failures == 3
    assert "rtsp://ranger:***@127.0.0.1:1/stream" in (camera.last_error or "")
    assert "hunter2" not in (camera.last_error or "")
    with factory() as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(Frame)) == 0
    assert not any(p.is_file() for p in (tmp_path / "frames").rglob("*"))


def test_scheduler_samples_every_camera_and_a_broken_one_does_not_stop_the_others(
    factory: sessionmaker[Session], tmp_path: Path, demo_footage: dict[str, Path]
) -> None:
    clips = list(demo_footage.values())
    good = [_camera(factory, str(clips[i]), name=f"good{i}", interval_s=0.5) for i in range(2)]
    broken = _camera(factory, str(tmp_path / "missing.avi"), name="broken", interval_s=0.5)

    def frames_per_camera() -> dict[int, int]:
        with factory() as session:
            rows = session.execute(sa.select(Frame.camera_id, sa.func.count()).group_by(Frame.camera_id)).all()
        return {camera_id: count for camera_id, count in rows}

    def broken_is_offline() -> bool:
        with factory() as session:
            camera = session.get(Camera, broken)
            return camera is not None and camera.health is CameraHealth.OFFLINE

    scheduler = start_ingest(factory, FrameStore(tmp_path / "frames"))
    try:  # events, not a fixed window: a busy machine only makes this slower
        wait_for("4 frames from each good camera and the broken one offline",
                 lambda: all(frames_per_camera().get(c, 0) >= 4 for c in good) and broken_is_offline(), timeout=60)
    finally:
        scheduler.stop()
    per_camera = frames_per_camera()
    with factory() as session:
        broken_camera = session.get(Camera, broken)
    assert broken not in per_camera
    assert broken_camera is not None and broken_camera.health is CameraHealth.OFFLINE
    assert "does not exist" in (broken_camera.last_error or "")
