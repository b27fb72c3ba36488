"""Hostile image files from every source that reads encoded images (image folder, HTTP
snapshot, MJPEG): refused from their byte count or the size in their header, before
anything is decoded, counted as ``too_large``, and the camera's next good frame is
taken at the next slot (no reconnect backoff). Symbolic links out of a folder are refused
(``outside_folder``)."""

from __future__ import annotations

import os
import resource
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from prometheus_client import REGISTRY
from sqlalchemy.orm import Session, sessionmaker

from bearwatch.errors import FrameError
from bearwatch.schema import CameraHealth, utcnow
from ingest.sampler import CameraSampler, CameraSpec
from ingest.sources import SourceState, capture
from ingest.store import FrameStore
from tests.ingest.helpers import camera, frames_of, jpeg, make_camera, scene
from tests.ingest.hostile import MAX_IMAGE_BYTES, MAX_SIDE, MIB, jpeg_claiming, png_bomb, sparse_file

T0 = datetime(2026, 7, 4, 22, 0, tzinfo=timezone.utc)
CAP = f"larger than {MAX_SIDE}x{MAX_SIDE} px"


def _name(i: int) -> str:
    return f"cam_{T0 + timedelta(seconds=5 * i):%Y%m%dT%H%M%S}Z"


def _counted(camera_id: int, site_id: int, outcome: str) -> float:
    labels = {"site": str(site_id), "camera": str(camera_id), "outcome": outcome}
    return REGISTRY.get_sample_value("bearwatch_ingest_slots_total", labels) or 0.0


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def test_hostile_files_in_a_folder_are_refused_quickly_and_the_next_good_frame_is_stored(
    factory: sessionmaker[Session], tmp_path: Path
) -> None:
    folder, outside = tmp_path / "replay", tmp_path / "elsewhere"
    folder.mkdir()
    outside.mkdir()
    (folder / f"{_name(0)}.jpg").write_bytes(jpeg(scene(1)))
    (folder / f"{_name(1)}.jpg").write_bytes(jpeg_claiming(30000, 30000))
    (folder / f"{_name(2)}.png").write_bytes(png_bomb(30000, 20000))
    sparse_file(folder / f"{_name(3)}.jpg")  # 2 GB of zeros
    (outside / "secret.jpg").write_bytes(jpeg(scene(2)))  # a readable picture, but not this camera's
    (folder / f"{_name(4)}.jpg").symlink_to(outside / "secret.jpg")
    (folder / "kept.jpg").write_bytes(jpeg(scene(3)))  # no time in its name: only reached by the link
    (folder / f"{_name(5)}.jpg").symlink_to(folder / "kept.jpg")  # a link within the folder is fine
    (folder / f"{_name(6)}.jpg").write_bytes(jpeg(scene(4)))
    source = f"folder://{folder}"
    camera_id = make_camera(factory, source, interval_s=5.0)
    site_id = camera(factory, camera_id).site_id
    before = {o: _counted(camera_id, site_id, o) for o in ("too_large", "outside_folder", "backoff")}
    # Default options: a refusal that backed off like a dead camera would show as "backoff" below.
    sampler = CameraSampler(factory, FrameStore(tmp_path / "frames"), CameraSpec(camera_id, site_id, source, 5.0))
    peak_before = _peak_rss_mb()
    outcomes, errors, seconds = [], [], []
    for _ in range(8):
        started = time.monotonic()
        outcomes.append(sampler.sample().value)
        seconds.append(time.monotonic() - started)
        errors.append(camera(factory, camera_id).last_error or "")
    assert outcomes == [
        "stored", "too_large", "too_large", "too_large", "outside_folder", "stored", "stored", "no_new",
    ], errors
    assert max(seconds[1:5]) < 2.0, seconds  # refused from the header or the file size, not decoded
    assert _peak_rss_mb() - peak_before < 500, "reading or decoding a hostile file took memory"
    assert f"{_name(1)}.jpg: image 30000x30000 px is {CAP}" in errors[1]
    assert f"{_name(2)}.png: image 30000x20000 px is {CAP}" in errors[2]
    assert f"file of {2 * 1024**3} bytes is larger than the {MAX_IMAGE_BYTES} bytes allowed" in errors[3]
    assert f"{_name(4)}.jpg: a symbolic link to a file outside the image folder" in errors[4]
    assert _counted(camera_id, site_id, "too_large") - before["too_large"] == 3
    assert _counted(camera_id, site_id, "outside_folder") - before["outside_folder"] == 1
    assert _counted(camera_id, site_id, "backoff") == before["backoff"]
    stored = frames_of(factory, camera_id)
    assert [f.captured_at for f in stored] == [T0, T0 + timedelta(seconds=25), T0 + timedelta(seconds=30)]
    row = camera(factory, camera_id)
    assert row.health is CameraHealth.ONLINE and row.last_error is None


class _HostileHandler(BaseHTTPRequestHandler):
    """_HostileCamera's answers; each camera serves a subclass with ``camera`` set."""

    camera: _HostileCamera

    def log_message(self, *args: object) -> None:
        pass

    def stream(self, chunk: bytes) -> None:
        sent = 0
        try:
            while sent < self.camera.limit:
                self.wfile.write(chunk)
                sent += len(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass
        self.camera.sent[self.path] = sent

    def do_GET(self) -> None:
        huge = jpeg_claiming(30000, 30000)
        self.send_response(200)
        if self.path == "/huge.jpg":
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Content-Length", str(len(huge)))
            self.end_headers()
            self.wfile.write(huge)
        elif self.path == "/declared-3gb.jpg":  # refused from Content-Length, body unread
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Content-Length", str(3 * 1024**3))
            self.end_headers()
            self.stream(bytes(MIB))
        elif self.path == "/endless.jpg":  # no length: read up to the cap, then refused
            self.send_header("Content-Type", "image/jpeg")
            self.end_headers()
            self.stream(b"\xff\xd8" + bytes(MIB - 2))
        elif self.path.startswith("/mjpeg"):
            self._mjpeg(huge)
        self.wfile.flush()

    def _mjpeg(self, huge: bytes) -> None:
        self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
        self.end_headers()
        self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\n")
        if self.path == "/mjpeg-huge":
            self.wfile.write(f"Content-Length: {len(huge)}\r\n\r\n".encode() + huge + b"\r\n--frame\r\n")
        elif self.path == "/mjpeg-declared-3gb":
            self.wfile.write(f"Content-Length: {3 * 1024**3}\r\n\r\n".encode())
            self.stream(bytes(MIB))
        else:  # a part without Content-Length that never ends
            self.wfile.write(b"\r\n")
            self.stream(b"\xff\xd8" + bytes(64 * 1024 - 3) + b"\n")


class _HostileCamera:
    """A loopback HTTP camera that sends hostile pictures; ``sent`` counts body bytes the
    server got out per path before the client hung up (at most ``limit``)."""

    limit = 256 * MIB

    def __init__(self) -> None:
        self.sent: dict[str, int] = {}
        handler = type("Handler", (_HostileHandler,), {"camera": self})
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"

    def __enter__(self) -> _HostileCamera:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hostile_camera() -> Iterator[_HostileCamera]:
    with _HostileCamera() as cam:
        yield cam


# What each hostile HTTP answer is refused with (all counted as too_large).
REFUSALS = {
    "/huge.jpg": f"snapshot: image 30000x30000 px is {CAP}",
    "/declared-3gb.jpg": f"snapshot of {3 * 1024**3} bytes is larger than the {MAX_IMAGE_BYTES} bytes allowed",
    "/endless.jpg": f"snapshot: image of more than {MAX_IMAGE_BYTES} bytes",
    "/mjpeg-huge": f"MJPEG part: image 30000x30000 px is {CAP}",
    "/mjpeg-declared-3gb": f"MJPEG part of {3 * 1024**3} bytes is larger than the {MAX_IMAGE_BYTES} bytes allowed",
    "/mjpeg-endless": f"MJPEG part of more than {MAX_IMAGE_BYTES} bytes",
}


@pytest.mark.parametrize("path", list(REFUSALS))
def test_http_snapshots_and_mjpeg_parts_are_refused_without_reading_past_the_cap(
    hostile_camera: _HostileCamera, path: str
) -> None:
    message = REFUSALS[path]
    peak_before = _peak_rss_mb()
    started = time.monotonic()
    with pytest.raises(FrameError, match=message) as refused:
        capture(hostile_camera.url(path), SourceState(), timeout_s=20, now=utcnow())
    assert getattr(refused.value, "reason", None) == "too_large"  # counted as too_large by the sampler
    assert time.monotonic() - started < 10
    assert _peak_rss_mb() - peak_before < 500
    deadline = time.monotonic() + 5  # the server notices the hang-up on its next write
    while path not in hostile_camera.sent and "huge" not in path and time.monotonic() < deadline:
        time.sleep(0.05)
    # What the client read stopped at the cap (the rest is what loopback socket buffers took).
    assert hostile_camera.sent.get(path, 0) < MAX_IMAGE_BYTES + 64 * MIB


def test_a_relative_link_out_of_the_folder_is_refused_and_a_link_to_a_directory_passed_over(
    factory: sessionmaker[Session], tmp_path: Path
) -> None:
    """Links to files outside are refused; links to directories are not images at all."""
    folder, outside = tmp_path / "f", tmp_path / "o"
    folder.mkdir()
    outside.mkdir()
    os.symlink(outside, folder / f"{_name(0)}.jpg")  # a directory: not a file, passed over
    (outside / "x.jpg").write_bytes(jpeg(scene(5)))
    os.symlink(os.path.relpath(outside / "x.jpg", folder), folder / f"{_name(1)}.jpg")  # relative, via ..
    with pytest.raises(FrameError, match="outside the image folder") as refused:
        capture(str(folder), SourceState(), timeout_s=3, now=utcnow())
    assert getattr(refused.value, "reason", None) == "outside_folder"
