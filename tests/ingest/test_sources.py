"""Sources against real servers on loopback: HTTP snapshots and MJPEG, credentials from
the environment that never show, nothing listening, a server that says nothing."""

from __future__ import annotations

import logging
import ssl
from pathlib import Path

import cv2
import numpy as np
import pytest
import trustme
from sqlalchemy.orm import Session, sessionmaker

from bearwatch.errors import ConfigError, FrameError
from bearwatch.schema import CameraHealth, utcnow
from bearwatch.settings import load_settings
from ingest.sampler import CameraSampler, CameraSpec, Outcome, SamplerOptions, sample_camera
from ingest.sources import SourceKind, SourceState, camera_tls_context, capture, name_time, source_kind
from ingest.store import FrameStore
from tests.ingest.helpers import CameraHTTP, camera, free_port, jpeg, make_camera, scene, silent_server


def _grab(source: str, timeout_s: float = 3.0) -> np.ndarray:
    got = capture(source, SourceState(), timeout_s=timeout_s, now=utcnow())
    assert got.image is not None
    return got.image


def test_source_kinds_and_file_name_times(tmp_path: Path) -> None:
    assert source_kind("rtsp://cam/x") is SourceKind.RTSP
    assert source_kind("https://cam/snap.jpg") is SourceKind.HTTP
    assert source_kind("/dev/video0") is SourceKind.DEVICE and source_kind("device://1") is SourceKind.DEVICE
    assert source_kind(str(tmp_path)) is SourceKind.FOLDER and source_kind(f"folder://{tmp_path}") is SourceKind.FOLDER
    assert source_kind(str(tmp_path / "clip.mp4")) is SourceKind.FILE
    with pytest.raises(FrameError, match="unsupported camera source ftp://u:\\*\\*\\*@h/x"):
        source_kind("ftp://u:secret@h/x")
    assert name_time("north_2026-07-04_22-15-03.jpg").isoformat() == "2026-07-04T22:15:03+00:00"  # type: ignore[union-attr]
    assert name_time("20260704T221503.120Z.jpg").microsecond == 120000  # type: ignore[union-attr]
    assert name_time("holiday.jpg") is None


def test_http_snapshot_and_mjpeg_give_the_current_picture() -> None:
    with CameraHTTP() as cam:
        cam.picture = jpeg(scene(21))
        expected = cv2.imdecode(np.frombuffer(cam.picture, np.uint8), cv2.IMREAD_COLOR)
        assert np.array_equal(_grab(cam.url("/snap.jpg")), expected)
        assert np.array_equal(_grab(cam.url("/mjpeg")), expected)
        cam.picture = jpeg(scene(22))  # the camera sees something else now: a fresh frame
        changed = cv2.imdecode(np.frombuffer(cam.picture, np.uint8), cv2.IMREAD_COLOR)
        assert np.array_equal(_grab(cam.url("/mjpeg")), changed)


def test_https_camera_with_its_own_certificate_is_trusted_only_through_the_ca_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A camera with a certificate from a CA the system does not know (as a self-signed one):
    # refused with a clear error, until the park's CA file is given (verification stays on).
    ca = trustme.CA()
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_tls)
    ca_file = tmp_path / "park-ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    with CameraHTTP(tls=server_tls) as cam:
        url = cam.url("/snap.jpg")
        assert url.startswith("https://")
        with pytest.raises(FrameError, match="TLS certificate not trusted .*BEARWATCH_CAMERA_CA_FILE"):
            capture(url, SourceState(), timeout_s=5, now=utcnow(), tls=camera_tls_context(None))
        got = capture(url, SourceState(), timeout_s=5, now=utcnow(), tls=camera_tls_context(ca_file))
        expected = cv2.imdecode(np.frombuffer(cam.picture, np.uint8), cv2.IMREAD_COLOR)
        assert got.image is not None and np.array_equal(got.image, expected)
    (tmp_path / "not-a-cert.pem").write_text("hello")
    with pytest.raises(ConfigError, match="BEARWATCH_CAMERA_CA_FILE .*not-a-cert.pem: not a readable PEM"):
        camera_tls_context(tmp_path / "not-a-cert.pem")
    monkeypatch.setenv("BEARWATCH_CAMERA_CA_FILE", str(ca_file))
    assert load_settings().camera_ca_file == ca_file


def test_credentials_come_from_the_environment_and_never_show(
    factory: sessionmaker[Session], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("CAM_PASSWORD", "hunter2-secret")
    with CameraHTTP(password="hunter2-secret") as cam:
        source = cam.url("/private/snap.jpg").replace("http://", "http://ranger:${CAM_PASSWORD}@")
        ok = make_camera(factory, source, name="ok")
        assert sample_camera(factory, FrameStore(tmp_path / "frames"), ok) is Outcome.STORED
        monkeypatch.setenv("CAM_PASSWORD", "wrong-password")
        with caplog.at_level(logging.WARNING):
            assert sample_camera(factory, FrameStore(tmp_path / "frames"), ok) is Outcome.FAILED
    row = camera(factory, ok)
    assert "HTTP 401" in (row.last_error or "")
    for text in (row.last_error or "", caplog.text):
        assert "wrong-password" not in text and "hunter2-secret" not in text
    missing = make_camera(factory, "rtsp://ranger:${NOT_SET_ANYWHERE}@127.0.0.1:1/x", name="unset")
    assert sample_camera(factory, FrameStore(tmp_path / "frames"), missing) is Outcome.FAILED
    assert "needs environment variable NOT_SET_ANYWHERE" in (camera(factory, missing).last_error or "")


@pytest.mark.parametrize("scheme", ["rtsp", "http"])
def test_nothing_listening_fails_fast_with_a_clear_error(
    factory: sessionmaker[Session], tmp_path: Path, scheme: str
) -> None:
    port = free_port()
    camera_id = make_camera(factory, f"{scheme}://user:pw123@127.0.0.1:{port}/stream")
    assert sample_camera(factory, FrameStore(tmp_path / "frames"), camera_id) is Outcome.FAILED
    row = camera(factory, camera_id)
    assert row.health is CameraHealth.DEGRADED and "pw123" not in (row.last_error or "")
    assert ("cannot open" in (row.last_error or "")) or ("cannot connect" in (row.last_error or ""))


@pytest.mark.parametrize("scheme", ["rtsp", "http"])
def test_a_server_that_accepts_and_says_nothing_hits_the_deadline(
    factory: sessionmaker[Session], tmp_path: Path, scheme: str
) -> None:
    with silent_server() as port:
        camera_id = make_camera(factory, f"{scheme}://127.0.0.1:{port}/stream", interval_s=1.0)
        spec = CameraSpec(camera_id, camera(factory, camera_id).site_id, f"{scheme}://127.0.0.1:{port}/stream", 1.0)
        sampler = CameraSampler(
            factory, FrameStore(tmp_path / "frames"), spec, options=SamplerOptions(capture_timeout_s=1.0, watchdog_grace_s=1.0)
        )
        assert sampler.sample() is Outcome.FAILED
    error = camera(factory, camera_id).last_error or ""
    assert any(word in error for word in ("timed out", "no answer", "watchdog", "cannot open")), error


def test_a_video_file_played_once_ends_with_a_clear_error(
    factory: sessionmaker[Session], tmp_path: Path, demo_footage: dict[str, Path]
) -> None:
    clip = next(iter(demo_footage.values()))
    looping = _grab(str(clip))
    assert looping.shape == (240, 320, 3)
    state = SourceState(started_monotonic=0.0)  # "started" long ago: past the clip's end
    with pytest.raises(FrameError, match="has ended"):
        capture(f"file://{clip}?loop=0", state, timeout_s=3, now=utcnow())
    assert capture(f"file://{clip}?loop=0", SourceState(), timeout_s=3, now=utcnow()).image is not None


@pytest.mark.parametrize("in_pool", [False, True], ids=["in-process", "capture-process"])
def test_a_local_device_that_is_not_there_fails_with_a_clear_error(in_pool: bool) -> None:
    """The device path for real, through OpenCV's V4L2 backend, on the one case this
    machine has: no camera plugged in (a working /dev/videoN cannot be made here)."""
    from ingest.capture_pool import CapturePool

    missing = next(n for n in range(40, 100) if not Path(f"/dev/video{n}").exists())
    pool = CapturePool(1) if in_pool else None
    try:
        with pytest.raises(FrameError, match=f"device://{missing}"):
            capture(f"device://{missing}", SourceState(), timeout_s=3.0, now=utcnow(), pool=pool)
    finally:
        if pool is not None:
            pool.close()
