"""`bearwatch ingest` processes: several share cameras on PostgreSQL through leases (a
SIGKILLed worker's cameras are taken over), SQLite refuses a second one; metrics on
/metrics; SIGTERM releases the leases; credentials never reach logs or metrics."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from itertools import pairwise
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from bearwatch.db import make_engine, session_factory
from bearwatch.migrations import upgrade_to_head
from bearwatch.schema import Camera, Frame
from tests.conftest import run_cli
from tests.ingest.helpers import free_port, make_camera, poll

LEASE_S = 3
INTERVAL_S = 0.5


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _ingest(env: dict[str, str], procs: list[subprocess.Popen[str]], *args: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "bearwatch", "ingest", "--lease", str(LEASE_S), "--capture-timeout", "2", *args],
        env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    procs.append(proc)
    return proc


def _owners(factory: sessionmaker[Session]) -> dict[int, str | None]:
    with factory() as session:
        return dict(session.execute(sa.select(Camera.id, Camera.lease_owner)).all())


def _times(factory: sessionmaker[Session]) -> dict[int, list[float]]:
    with factory() as session:
        out: dict[int, list[float]] = {}
        for camera_id, at in session.execute(sa.select(Frame.camera_id, Frame.captured_at).order_by(Frame.captured_at)):
            out.setdefault(camera_id, []).append(at.timestamp())
        return out


def test_two_workers_on_postgresql_share_cameras_and_take_over_a_killed_one(
    pg_url: str, tmp_path: Path, demo_footage: dict[str, Path], procs: list[subprocess.Popen[str]]
) -> None:
    engine = make_engine(pg_url)
    upgrade_to_head(engine)
    factory = session_factory(engine)
    clips = list(demo_footage.values())
    cameras = [make_camera(factory, str(clips[i % len(clips)]), name=f"c{i}", interval_s=INTERVAL_S) for i in range(4)]
    env = {"BEARWATCH_DATABASE_URL": pg_url, "BEARWATCH_DATA_DIR": str(tmp_path / "data")}
    first = _ingest(env, procs)
    assert poll(lambda: all(_owners(factory).values()), timeout_s=30)  # alone, it takes them all
    second = _ingest(env, procs)

    def pids() -> list[int | None]:
        return [int(o.split(":")[1]) if o else None for o in _owners(factory).values()]

    # the first gives up its surplus when the second appears: two cameras each
    assert poll(lambda: sorted(pids(), key=str) == sorted([first.pid] * 2 + [second.pid] * 2, key=str), timeout_s=30)
    shared_at = max(max(t) for t in _times(factory).values())
    assert poll(lambda: all(max(_times(factory).get(c, [0])) > shared_at + 1 for c in cameras), timeout_s=30)
    os.kill(first.pid, signal.SIGKILL)
    first.wait()
    killed_at = max(max(t) for t in _times(factory).values())
    # within the lease time (plus a heartbeat) the survivor owns and samples every camera
    assert poll(lambda: pids() == [second.pid] * 4, timeout_s=LEASE_S * 4)
    assert poll(lambda: all(max(_times(factory)[c]) > killed_at + 1 for c in cameras), timeout_s=LEASE_S * 4)
    second.send_signal(signal.SIGTERM)
    assert second.wait(timeout=30) == 0
    assert set(_owners(factory).values()) == {None}  # SIGTERM gave the leases back
    for camera_id, times in _times(factory).items():  # never two workers in one slot
        gaps = [b - a for a, b in pairwise(times)]
        assert min(gaps) >= INTERVAL_S * 0.5, (camera_id, gaps)
    engine.dispose()


def test_sqlite_refuses_a_second_worker_and_serves_metrics_without_credentials(
    tmp_path: Path, demo_footage: dict[str, Path], procs: list[subprocess.Popen[str]]
) -> None:
    url = f"sqlite:///{tmp_path / 'bearwatch.db'}"
    engine = make_engine(url)
    upgrade_to_head(engine)
    factory = session_factory(engine)
    good = make_camera(factory, str(next(iter(demo_footage.values()))), name="good", interval_s=INTERVAL_S)
    make_camera(factory, f"rtsp://ranger:${{CAM_SECRET}}@127.0.0.1:{free_port()}/x", name="down", interval_s=INTERVAL_S)
    env = {"BEARWATCH_DATABASE_URL": url, "BEARWATCH_DATA_DIR": str(tmp_path / "data"), "CAM_SECRET": "hunter2-xyz"}
    port = free_port()
    worker = _ingest(env, procs, "--metrics-port", str(port), "--backoff-cap", "1")
    assert poll(lambda: all(_owners(factory).values()), timeout_s=30)
    second = run_cli("ingest", env=env, timeout=60)
    assert second.returncode == 2
    assert second.stderr.startswith("error: another ingest process (pid ")
    assert "use PostgreSQL to run several workers" in second.stderr

    def page() -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
            return resp.read().decode()

    assert poll(lambda: 'bearwatch_camera_reconnects_total{camera="2"' in page(), timeout_s=30)
    text = page()
    assert f'bearwatch_ingest_slots_total{{camera="{good}",outcome="stored",site="1"}}' in text
    assert 'bearwatch_ingest_slots_total{camera="2",outcome="failed",site="1"}' in text
    assert 'bearwatch_camera_up{camera="2",site="1"} 0.0' in text
    assert f'bearwatch_camera_up{{camera="{good}",site="1"}} 1.0' in text
    assert "bearwatch_camera_last_frame_timestamp_seconds" in text and "bearwatch_capture_duration_seconds_bucket" in text
    worker.send_signal(signal.SIGTERM)
    out, err = worker.communicate(timeout=30)
    assert worker.returncode == 0, err[-2000:]
    assert set(_owners(factory).values()) == {None}
    for output in (out, err, text):
        assert "hunter2-xyz" not in output
    assert "rtsp://ranger:***@127.0.0.1" in err
    engine.dispose()
