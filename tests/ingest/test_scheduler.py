"""The ingest service: a stalled camera never delays the others; disabled cameras;
leases decide who may commit; the file is durable before its row, and never orphaned."""

from __future__ import annotations

import socket
import threading
from datetime import timedelta
from itertools import pairwise
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from bearwatch.schema import Camera, CameraHealth, Frame, utcnow
from ingest.sampler import CameraSampler, CameraSpec, Outcome, SamplerOptions
from ingest.scheduler import IngestOptions, IngestService
from ingest.store import FrameStore
from tests.ingest.helpers import camera, frames_of, health_events, make_camera, poll, silent_server


def test_stalled_cameras_do_not_delay_the_others(
    factory: sessionmaker[Session], tmp_path: Path, demo_footage: dict[str, Path]
) -> None:
    clip = str(next(iter(demo_footage.values())))
    good = [make_camera(factory, clip, name=f"good{i}", interval_s=0.5) for i in range(2)]
    with silent_server() as port:
        stalled = [
            make_camera(factory, f"rtsp://127.0.0.1:{port}/a", name="stalled-rtsp", interval_s=0.5),
            make_camera(factory, f"http://127.0.0.1:{port}/snap.jpg", name="stalled-http", interval_s=0.5),
        ]
        # Few capture threads and a capture deadline twelve intervals long: if stalled
        # captures held up the pool, the scheduler or OpenCV's open lock, the good
        # cameras would wait for that deadline.
        options = IngestOptions(lease_s=10, threads=4, sampler=SamplerOptions(capture_timeout_s=6.0, watchdog_grace_s=1.0))
        service = IngestService(factory, FrameStore(tmp_path / "frames"), options).start()
        try:
            assert poll(lambda: all(len(frames_of(factory, c)) >= 8 for c in good), timeout_s=30)
            assert poll(lambda: all(camera(factory, c).consecutive_failures >= 1 for c in stalled), timeout_s=30)
        finally:
            service.stop()
    for c in good:
        times = [f.captured_at for f in frames_of(factory, c)]
        gaps = [(b - a).total_seconds() for a, b in pairwise(times)]
        assert max(gaps[:7]) < 5.0, gaps  # on schedule, not waiting for a 6 s deadline
    for c in stalled:
        assert frames_of(factory, c) == [] and camera(factory, c).health is not CameraHealth.ONLINE
    with factory() as session:  # leases given back on stop
        assert session.scalar(sa.select(sa.func.count()).where(Camera.lease_owner.is_not(None))) == 0


def test_disabled_camera_is_not_sampled_and_its_health_says_so(
    factory: sessionmaker[Session], tmp_path: Path, demo_footage: dict[str, Path]
) -> None:
    clip = str(next(iter(demo_footage.values())))
    camera_id = make_camera(factory, clip, interval_s=0.5)
    with factory.begin() as session:
        session.execute(sa.update(Camera).where(Camera.id == camera_id).values(enabled=False))
    service = IngestService(factory, FrameStore(tmp_path / "frames"), IngestOptions(lease_s=3)).start()
    try:
        assert service.cameras() == []
        with factory.begin() as session:
            session.execute(sa.update(Camera).where(Camera.id == camera_id).values(enabled=True))
        assert poll(lambda: len(frames_of(factory, camera_id)) >= 1, timeout_s=15)  # picked up at a heartbeat
    finally:
        service.stop()
    assert health_events(factory, camera_id)[:2] == [("unknown", "disabled"), ("disabled", "online")]


def test_a_worker_without_the_lease_commits_nothing_and_leaves_no_file(
    factory: sessionmaker[Session], tmp_path: Path, demo_footage: dict[str, Path]
) -> None:
    clip = str(next(iter(demo_footage.values())))
    camera_id = make_camera(factory, clip)
    with factory.begin() as session:
        session.execute(sa.update(Camera).where(Camera.id == camera_id).values(
            lease_owner="other-worker", lease_until=utcnow() + timedelta(seconds=60)))
    spec = CameraSpec(camera_id, camera(factory, camera_id).site_id, clip, 5.0)
    store = FrameStore(tmp_path / "frames")
    assert CameraSampler(factory, store, spec, owner="me").sample() is Outcome.LEASE_LOST
    assert frames_of(factory, camera_id) == []
    assert not [p for p in (tmp_path / "frames").rglob("*") if p.is_file()]
    assert CameraSampler(factory, store, spec, owner="other-worker").sample() is Outcome.STORED



def test_no_row_without_a_file_and_no_file_without_a_row(
    factory: sessionmaker[Session], tmp_path: Path, demo_footage: dict[str, Path]
) -> None:
    clip = str(next(iter(demo_footage.values())))
    camera_id = make_camera(factory, clip)
    spec = CameraSpec(camera_id, camera(factory, camera_id).site_id, clip, 5.0)
    # 1. the store cannot write (its root is a file): the sample fails, no row
    blocked = tmp_path / "blocked"
    blocked.write_text("not a directory")
    assert CameraSampler(factory, FrameStore(blocked), spec).sample() is Outcome.FAILED
    assert frames_of(factory, camera_id) == []
    assert "frame store" in (camera(factory, camera_id).last_error or "")
    # 2. the row cannot be committed (a frame at that time exists): the new file is removed
    store = FrameStore(tmp_path / "frames")
    sampler = CameraSampler(factory, store, spec)
    assert sampler.sample() is Outcome.STORED
    (first,) = frames_of(factory, camera_id)
    from ingest import sampler as sampler_module

    original = sampler_module.utcnow
    sampler_module.utcnow = lambda: first.captured_at  # the same capture time again
    try:
        assert sampler.sample() is Outcome.FAILED
    finally:
        sampler_module.utcnow = original
    files = [p for p in (tmp_path / "frames").rglob("*") if p.is_file()]
    assert [p.relative_to(tmp_path / "frames").as_posix() for p in files] == [first.path]
    with factory() as session:
        for frame in session.scalars(sa.select(Frame)):
            assert store.absolute(frame.path).is_file()


def test_a_slot_skipped_because_the_previous_sample_still_runs_is_counted_as_missed(
    factory: sessionmaker[Session], tmp_path: Path
) -> None:
    from prometheus_client import REGISTRY

    from tests.ingest.helpers import CameraHTTP

    with CameraHTTP() as cam:
        camera_id = make_camera(factory, cam.url("/trickle"), interval_s=0.5)
        site = str(camera(factory, camera_id).site_id)

        def missed() -> float:
            labels = {"site": site, "camera": str(camera_id), "outcome": "missed"}
            return REGISTRY.get_sample_value("bearwatch_ingest_slots_total", labels) or 0.0

        before = missed()
        options = IngestOptions(lease_s=10, sampler=SamplerOptions(capture_timeout_s=2.0, watchdog_grace_s=0.5))
        service = IngestService(factory, FrameStore(tmp_path / "frames"), options).start()
        try:
            assert poll(lambda: missed() - before >= 2, timeout_s=15)
        finally:
            service.stop()


def test_stop_gives_the_cameras_back_at_once_while_a_capture_is_in_flight(
    factory: sessionmaker[Session], tmp_path: Path
) -> None:
    """SIGTERM during a stalled HTTP capture (a 30 s deadline): the leases are released
    while the capture still hangs, not after its deadline, so another worker takes the
    camera now and a supervisor's kill after its grace period strands nothing."""
    accepted = threading.Event()
    listener = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []

    def accept() -> None:  # a camera that answers the connection and then nothing
        conn, _ = listener.accept()
        held.append(conn)
        accepted.set()

    threading.Thread(target=accept, daemon=True).start()
    port = listener.getsockname()[1]
    camera_id = make_camera(factory, f"http://127.0.0.1:{port}/snap.jpg", interval_s=1.0)
    options = IngestOptions(lease_s=10, threads=2, sampler=SamplerOptions(capture_timeout_s=30.0, watchdog_grace_s=1.0))
    service = IngestService(factory, FrameStore(tmp_path / "frames"), options).start()
    stopping = threading.Thread(target=service.stop)
    try:
        assert accepted.wait(30), "the capture never connected"
        assert camera(factory, camera_id).lease_owner == service.owner
        stopping.start()
        assert poll(lambda: camera(factory, camera_id).lease_owner is None, timeout_s=10), "lease still held"
        assert stopping.is_alive(), "stop() is still waiting for the capture: it really was in flight"
    finally:
        for conn in held:
            conn.close()  # the capture ends now
        if stopping.ident is None:
            service.stop()
        else:
            stopping.join(60)
        listener.close()
    assert frames_of(factory, camera_id) == []
