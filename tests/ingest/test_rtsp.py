"""A real RTSP server on loopback (GStreamer's gst-rtsp-server under the system Python)
serving H.264 footage made with ffmpeg: sampling, credentials, and a server that is
killed and restarted while ingest runs (the camera comes back online by itself)."""

from __future__ import annotations

import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import REGISTRY
from sqlalchemy.orm import Session, sessionmaker

from bearwatch.errors import FrameError
from bearwatch.schema import CameraHealth
from ingest.capture_pool import CapturePool
from ingest.sampler import CameraSampler, CameraSpec, Outcome, SamplerOptions
from ingest.scheduler import IngestOptions, IngestService
from ingest.store import FrameStore
from tests.ingest.helpers import camera, frames_of, free_port, health_events, make_camera, poll, silent_server

SERVER = Path(__file__).with_name("rtsp_server.py")
SYSTEM_PYTHON = "/usr/bin/python3"


def _gst_rtsp_available() -> bool:
    if shutil.which("ffmpeg") is None or not Path(SYSTEM_PYTHON).exists():
        return False
    probe = "import gi; gi.require_version('GstRtspServer', '1.0'); from gi.repository import GstRtspServer"
    return subprocess.run([SYSTEM_PYTHON, "-c", probe], capture_output=True).returncode == 0


pytestmark = pytest.mark.skipif(
    not _gst_rtsp_available(), reason="needs ffmpeg and gst-rtsp-server (scripts/install-system-deps.sh)"
)


@pytest.fixture(scope="module")
def h264_clip(tmp_path_factory: pytest.TempPathFactory, demo_footage: dict[str, Path]) -> Path:
    """30 one-second H.264 segments (the server plays the one of the current second)."""
    folder = tmp_path_factory.mktemp("rtsp")
    subprocess.run(
        ["ffmpeg", "-loglevel", "error", "-y", "-i", str(next(iter(demo_footage.values()))), "-t", "30",
         "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p", "-g", "5",
         "-f", "segment", "-segment_time", "1", "-reset_timestamps", "1", str(folder / "seg_%03d.mp4")],
        check=True,
    )
    return folder


class RtspServer:
    """``live``: also serve /live, a never-ending camera encoded as it goes at ``live`` fps."""

    def __init__(self, clip: Path, port: int, auth: str | None = None, live: int | None = None) -> None:
        self.clip, self.port, self.auth, self.live = clip, port, auth, live
        self.proc: subprocess.Popen[str] | None = None

    def start(self) -> None:
        args = [SYSTEM_PYTHON, str(SERVER), str(self.port), str(self.clip), "cam"]
        if self.auth:
            args.append(f"--auth={self.auth}")
        if self.live:
            args.append(f"--live={self.live}")
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        assert self.proc.stdout is not None
        assert self.proc.stdout.readline().strip() == "ready"

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if self.proc is not None and self.proc.stdout is not None:
            self.proc.stdout.close()


@pytest.fixture
def rtsp_server(h264_clip: Path) -> Iterator[RtspServer]:
    server = RtspServer(h264_clip, free_port(), auth="ranger:hunter2")
    server.start()
    yield server
    server.kill()


def test_rtsp_over_tcp_with_credentials_from_the_environment(
    factory: sessionmaker[Session], tmp_path: Path, rtsp_server: RtspServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CAM_PW", "hunter2")
    source = f"rtsp://ranger:${{CAM_PW}}@127.0.0.1:{rtsp_server.port}/cam"
    camera_id = make_camera(factory, source)
    spec = CameraSpec(camera_id, camera(factory, camera_id).site_id, source, 5.0)
    pool = CapturePool(1)
    try:
        sampler = CameraSampler(factory, FrameStore(tmp_path / "frames"), spec, pool=pool)
        assert sampler.sample() is Outcome.STORED
        (frame,) = frames_of(factory, camera_id)
        assert (frame.width, frame.height) == (320, 240)
        monkeypatch.setenv("CAM_PW", "wrong-pw")
        assert sampler.sample() is Outcome.FAILED
    finally:
        pool.close()
    error = camera(factory, camera_id).last_error or ""
    assert f"rtsp://ranger:***@127.0.0.1:{rtsp_server.port}/cam" in error
    assert "wrong-pw" not in error and "hunter2" not in error


def test_a_killed_and_restarted_server_comes_back_online_by_itself(
    factory: sessionmaker[Session], tmp_path: Path, rtsp_server: RtspServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CAM_PW", "hunter2")
    camera_id = make_camera(factory, f"rtsp://ranger:${{CAM_PW}}@127.0.0.1:{rtsp_server.port}/cam", interval_s=0.5)
    options = IngestOptions(lease_s=10, capture_processes=2, sampler=SamplerOptions(capture_timeout_s=2.0, backoff_cap_s=1.0))
    service = IngestService(factory, FrameStore(tmp_path / "frames"), options).start()
    try:
        assert poll(lambda: camera(factory, camera_id).health is CameraHealth.ONLINE, timeout_s=20)
        rtsp_server.kill()
        assert poll(lambda: camera(factory, camera_id).health is CameraHealth.OFFLINE, timeout_s=30)
        before = len(frames_of(factory, camera_id))
        rtsp_server.start()
        assert poll(lambda: camera(factory, camera_id).health is CameraHealth.ONLINE, timeout_s=30)
        assert len(frames_of(factory, camera_id)) > before
    finally:
        service.stop()
    events = health_events(factory, camera_id)
    assert ("offline", "online") in events and events[0] == ("unknown", "online")


def _slots(factory: sessionmaker[Session], camera_id: int, outcome: str) -> float:
    labels = {"site": str(camera(factory, camera_id).site_id), "camera": str(camera_id), "outcome": outcome}
    return REGISTRY.get_sample_value("bearwatch_ingest_slots_total", labels) or 0.0


def test_stalled_and_dead_cameras_never_cost_a_live_camera_a_slot(
    factory: sessionmaker[Session], tmp_path: Path, rtsp_server: RtspServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Eight stalled RTSP cameras (they hold a capture process for their whole 6 s deadline)
    and two dead ones beside two live ones on the real server, the pool sized by itself:
    the live cameras are sampled on every slot, never "pool busy" and never degraded."""
    monkeypatch.setenv("CAM_PW", "hunter2")
    live_source = f"rtsp://ranger:${{CAM_PW}}@127.0.0.1:{rtsp_server.port}/cam"
    with silent_server() as stalled_port:
        live = [make_camera(factory, live_source, name=f"live{i}", interval_s=2.0) for i in range(2)]
        others = [make_camera(factory, f"rtsp://127.0.0.1:{stalled_port}/s{i}", name=f"stalled{i}", interval_s=2.0)
                  for i in range(8)]
        others += [make_camera(factory, f"rtsp://127.0.0.1:{free_port()}/d{i}", name=f"dead{i}", interval_s=2.0)
                   for i in range(2)]
        before = [(_slots(factory, c, "pool_busy"), _slots(factory, c, "failed")) for c in live]
        options = IngestOptions(lease_s=10, threads=16, sampler=SamplerOptions(capture_timeout_s=6.0, backoff_cap_s=2.0))
        service = IngestService(factory, FrameStore(tmp_path / "frames"), options).start()
        try:
            assert poll(lambda: all(len(frames_of(factory, c)) >= 6 for c in live), timeout_s=90)
        finally:
            service.stop()
    for c, (busy, failed) in zip(live, before, strict=True):
        assert camera(factory, c).health is CameraHealth.ONLINE and camera(factory, c).consecutive_failures == 0
        assert [e for e in health_events(factory, c) if e[1] != "online"] == [], health_events(factory, c)
        assert _slots(factory, c, "pool_busy") == busy and _slots(factory, c, "failed") == failed
    assert all(camera(factory, c).health is not CameraHealth.ONLINE for c in others)
    assert service.pool.size >= len(live) + 8  # sized from what the cameras hold, not a fixed 4


def test_a_busy_pool_is_the_workers_shortage_not_the_cameras_failure(
    factory: sessionmaker[Session], tmp_path: Path, rtsp_server: RtspServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CAM_PW", "hunter2")
    source = f"rtsp://ranger:${{CAM_PW}}@127.0.0.1:{rtsp_server.port}/cam"
    camera_id = make_camera(factory, source)
    pool = CapturePool(1)
    sampler = CameraSampler(factory, FrameStore(tmp_path / "frames"), CameraSpec(
        camera_id, camera(factory, camera_id).site_id, source, 5.0), pool=pool)
    busy_before = _slots(factory, camera_id, "pool_busy")  # the counter is this process's, across tests
    try:
        assert sampler.sample() is Outcome.STORED
        with silent_server() as port:  # the pool's only process, held by a stalled capture
            def stalled_capture() -> None:
                with pytest.raises(FrameError):
                    pool.capture("rtsp", f"rtsp://127.0.0.1:{port}/x", 10, 10)

            hog = threading.Thread(target=stalled_capture)
            hog.start()
            assert poll(lambda: pool._idle.qsize() == 0, timeout_s=10)
            assert sampler.sample() is Outcome.POOL_BUSY
            assert sampler.sample() is Outcome.POOL_BUSY  # no backoff: it tries again next slot
            cam = camera(factory, camera_id)
            assert cam.health is CameraHealth.ONLINE and cam.consecutive_failures == 0 and not cam.last_error
        hog.join(30)
        assert sampler.sample() is Outcome.STORED
    finally:
        pool.close()
    assert _slots(factory, camera_id, "pool_busy") - busy_before == 2
