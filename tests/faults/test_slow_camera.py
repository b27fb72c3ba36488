"""Issue 15 item 8: a camera sampled faster than it can be opened.

A live RTSP camera (the real gst-rtsp-server encoding as it goes, 10 fps, a key frame
every second) behind a TCP proxy that holds every new connection for 2.5 s before
passing it on, as a camera with a slow RTSP handshake does: each open-grab-release takes
longer than the camera's 2 s interval, whatever the machine's own speed. Ingest must notice by itself, switch the camera to a persistent reader (a
process of its own), say so in the camera's health history and in a metric, count the
slots missed meanwhile under their own reason, and from then on sample every slot. A
stream that then hangs is still detected (the camera goes offline, the error redacted),
and stopping ingest leaves no reader process behind.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from prometheus_client import REGISTRY
from sqlalchemy.orm import Session, sessionmaker

from bearwatch.schema import CameraHealth, CameraHealthEvent
from ingest.sampler import SamplerOptions
from ingest.scheduler import IngestOptions, IngestService
from ingest.store import FrameStore
from tests.conftest import run_cli
from tests.ingest.helpers import camera, frames_of, free_port, health_events, make_camera, poll
from tests.ingest.test_rtsp import RtspServer, _gst_rtsp_available

pytestmark = pytest.mark.skipif(
    not _gst_rtsp_available(), reason="needs ffmpeg and gst-rtsp-server (scripts/install-system-deps.sh)"
)

INTERVAL_S = 2.0
HANDSHAKE_DELAY_S = 2.5  # what every new connection waits: an open takes longer than the interval


class SlowHandshakeProxy:
    """A TCP proxy on loopback: every new connection waits ``delay_s`` before it is passed
    to the camera (a slow RTSP handshake). ``freeze()`` makes the camera hang: nothing is
    passed on any more, in either direction, and new connections are accepted and never
    answered; the sockets stay open, so only deadlines can notice."""

    def __init__(self, upstream_port: int, delay_s: float) -> None:
        self.upstream_port, self.delay_s = upstream_port, delay_s
        self.frozen = threading.Event()
        self.stopped = threading.Event()
        self.connections = 0
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.listener.settimeout(0.2)
        self.port = int(self.listener.getsockname()[1])
        self._sockets: list[socket.socket] = []
        self._threads = [threading.Thread(target=self._accept, daemon=True)]
        self._threads[0].start()

    def freeze(self) -> None:
        self.frozen.set()

    def _accept(self) -> None:
        while not self.stopped.is_set():
            try:
                client, _ = self.listener.accept()
            except OSError:
                continue
            self.connections += 1
            self._sockets.append(client)
            thread = threading.Thread(target=self._connect, args=(client,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _connect(self, client: socket.socket) -> None:
        if self.stopped.wait(self.delay_s) or self.frozen.is_set():
            return  # a hung camera: accepted, never answered
        try:
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=5)
        except OSError:
            client.close()
            return
        self._sockets.append(upstream)
        for a, b in ((client, upstream), (upstream, client)):
            thread = threading.Thread(target=self._pump, args=(a, b), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        src.settimeout(0.2)
        while not self.stopped.is_set():
            if self.frozen.is_set():
                self.stopped.wait(0.2)  # hold everything: the peer's reads and writes block
                continue
            try:
                data = src.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                break
            if not data:
                break
            try:
                dst.sendall(data)
            except OSError:
                break
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def close(self) -> None:
        self.stopped.set()
        for thread in self._threads:
            thread.join(2)
        for s in [*self._sockets, self.listener]:
            s.close()


@pytest.fixture
def slow_camera(tmp_path: Path) -> Iterator[tuple[RtspServer, SlowHandshakeProxy]]:
    # /live only: colour bars encoded as they are made, 10 fps, a key frame every second
    server = RtspServer(tmp_path / "no-clip", free_port(), auth="ranger:hunter2", live=10)
    server.start()
    proxy = SlowHandshakeProxy(server.port, HANDSHAKE_DELAY_S)
    yield server, proxy
    proxy.close()
    server.kill()


def _sample(name: str, labels: dict[str, str]) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def _slots(site: str, cam: str) -> dict[str, float]:
    """The camera's slots so far, by outcome (this process's counters, across tests)."""
    found: dict[str, float] = {}
    for metric in REGISTRY.collect():
        if metric.name == "bearwatch_ingest_slots":
            for s in metric.samples:
                if s.name.endswith("_total") and s.labels["site"] == site and s.labels["camera"] == cam:
                    found[s.labels["outcome"]] = s.value
    return found


def _missed(site: str, cam: str, reason: str) -> float:
    return _sample("bearwatch_ingest_slots_missed_total", {"site": site, "camera": cam, "reason": reason})


def _notes(factory: sessionmaker[Session], camera_id: int) -> list[str]:
    """Health events that change no state: how the camera is sampled."""
    with factory() as session:
        rows = session.scalars(sa.select(CameraHealthEvent).where(
            CameraHealthEvent.camera_id == camera_id, CameraHealthEvent.from_health == CameraHealthEvent.to_health,
        ).order_by(CameraHealthEvent.id))
        return [e.reason for e in rows]


def _capture_processes() -> list[int]:
    """This test process's children running ingest.capture_child (pool and readers)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        state = stat.rsplit(")", 1)[1].split()[0]
        if ppid == os.getpid() and state != "Z" and b"ingest.capture_child" in cmdline:
            pids.append(int(entry.name))
    return pids


def _status_line(env: dict[str, str]) -> str:
    """The camera's line in the real `bearwatch status`."""
    done = run_cli("status", env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    (line,) = [row for row in done.stdout.splitlines() if row.strip().startswith("camera cam:")]
    return line


# What is under test is ingest against a slow camera, not the database (the health history
# and the frames are written as everywhere else): one database, PostgreSQL, as parks run it.
# Each run takes over a minute of waiting on the camera's intervals.
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_camera_slower_than_its_interval_is_switched_to_a_persistent_reader(
    factory: sessionmaker[Session], tmp_path: Path, slow_camera: tuple[RtspServer, SlowHandshakeProxy],
    monkeypatch: pytest.MonkeyPatch, data_env: dict[str, str],
) -> None:
    _, proxy = slow_camera
    monkeypatch.setenv("CAM_PW", "hunter2")
    camera_id = make_camera(factory, f"rtsp://ranger:${{CAM_PW}}@127.0.0.1:{proxy.port}/live", interval_s=INTERVAL_S)
    site, cam = str(camera(factory, camera_id).site_id), str(camera_id)
    before = _slots(site, cam)
    others = set(_capture_processes())  # left by other tests of this process, if any: not ours
    slow_before = _missed(site, cam, "capture_slower_than_interval")
    options = IngestOptions(lease_s=10, sampler=SamplerOptions(capture_timeout_s=8.0, backoff_cap_s=2.0))
    service = IngestService(factory, FrameStore(tmp_path / "frames"), options).start()
    try:
        # 1. Opened per sample, each open outlasts the 2 s slot: the camera is switched by itself.
        assert poll(lambda: any(n.startswith("persistent reader") for n in _notes(factory, camera_id)), timeout_s=90), (
            _slots(site, cam), _notes(factory, camera_id))
        (note,) = _notes(factory, camera_id)
        assert note.startswith("persistent reader: opening took ") and note.endswith(" s at a 2 s interval"), note
        assert float(note.split("took ")[1].split(" s")[0]) >= HANDSHAKE_DELAY_S
        assert _sample("bearwatch_camera_persistent_reader", {"site": site, "camera": cam}) == 1.0
        sampler = service.samplers[camera_id]
        assert sampler.reader is not None and sampler.reader_note == note
        line = _status_line(data_env)
        assert note in line and f"rtsp://ranger:***@127.0.0.1:{proxy.port}/live" in line, line
        # The slots lost meanwhile, counted under their own reason (and still as "missed").
        switched = _slots(site, cam)
        slow_missed = _missed(site, cam, "capture_slower_than_interval") - slow_before
        assert slow_missed >= 1
        assert switched.get("missed", 0) - before.get("missed", 0) >= slow_missed
        assert switched.get("failed", 0) == before.get("failed", 0)

        # 2. The reader is connected once a frame comes through it (its own open is slow too).
        stored_at_switch = len(frames_of(factory, camera_id))
        assert poll(lambda: len(frames_of(factory, camera_id)) > stored_at_switch, timeout_s=30)
        connections = proxy.connections

        # 3. From now on (nearly) every slot stores a frame: over the next 10 slots, counted
        #    as they pass whatever their outcome, at least 6 frames, where open-grab-release
        #    stored one slot in three here (each open takes about 5.5 s) and in two at the
        #    issue's 2-3 s. (A sample can still lose a slot when the loaded machine stalls.)
        def total() -> float:
            return sum(_slots(site, cam).values())

        start_slots, start_frames = total(), len(frames_of(factory, camera_id))
        assert poll(lambda: total() >= start_slots + 10, timeout_s=90)
        window_slots = total() - start_slots
        window_frames = len(frames_of(factory, camera_id)) - start_frames
        assert window_frames >= 0.6 * window_slots, (window_frames, window_slots, _slots(site, cam))
        assert proxy.connections == connections  # one stream kept open: no reconnect per sample
        assert camera(factory, camera_id).health is CameraHealth.ONLINE
        assert [e for e in health_events(factory, camera_id) if e[1] != "online"] == []
        assert service.pool.size >= 1

        # 4. The stream hangs (the connection stays open, nothing comes): detected by the
        #    deadlines, the camera goes offline as with open-grab-release, the error redacted.
        proxy.freeze()
        assert poll(lambda: camera(factory, camera_id).health is CameraHealth.OFFLINE, timeout_s=90), (
            health_events(factory, camera_id), camera(factory, camera_id).last_error)
        error = camera(factory, camera_id).last_error or ""
        assert "persistent reader" in error or "reader process" in error, error
        assert "hunter2" not in error
        assert ("online", "degraded") in health_events(factory, camera_id)
    finally:
        service.stop()
    # 5. Stopping ingest ends the reader's process (and the pool's).
    assert poll(lambda: set(_capture_processes()) <= others, timeout_s=10), _capture_processes()
    assert _sample("bearwatch_camera_persistent_reader", {"site": site, "camera": cam}) == 0.0
    # 6. A new ingest opens the camera per sample again (and measures again): status says so.
    service = IngestService(factory, FrameStore(tmp_path / "frames"), options).start()
    try:
        assert poll(lambda: _notes(factory, camera_id)[-1].startswith("opened per sample again"), timeout_s=30)
        assert service.samplers[camera_id].reader is None
    finally:
        service.stop()
    assert "opened per sample again" in _status_line(data_env)
    assert poll(lambda: set(_capture_processes()) <= others, timeout_s=10), _capture_processes()
