"""Metrics that tell the truth: a worker exports camera_up only for the cameras it holds,
frames captured are stored frames (slots have their own counter), /metrics listens on
loopback unless BEARWATCH_METRICS_ADDRESS says otherwise, and the dashboard serves its
/metrics from the start, before anyone opens a page."""

from __future__ import annotations

import subprocess
import urllib.request
from pathlib import Path

import pytest
from prometheus_client import REGISTRY
from sqlalchemy.orm import Session, sessionmaker

from bearwatch.db import write_transaction
from bearwatch.schema import utcnow
from ingest.leases import claim_cameras, release_cameras
from ingest.sampler import CameraSampler, CameraSpec, Outcome, SamplerOptions
from ingest.scheduler import IngestOptions, IngestService
from ingest.store import FrameStore
from tests.dashboard.server import running_dashboard
from tests.ingest.helpers import CameraHTTP, camera, free_port, make_camera, poll


def _value(name: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(name, labels)


def _frames_captured(site: str, camera_id: str) -> float:
    """Every bearwatch_frames_captured_total sample of the camera, whatever its other labels."""
    return sum(
        sample.value
        for metric in REGISTRY.collect() if metric.name == "bearwatch_frames_captured"
        for sample in metric.samples
        if sample.name == "bearwatch_frames_captured_total"
        and sample.labels.get("site") == site and sample.labels.get("camera") == camera_id
    )


def _slots(site: str, camera_id: str, outcome: str) -> float:
    return _value("bearwatch_ingest_slots_total", site=site, camera=camera_id, outcome=outcome) or 0.0


def _drop_camera_up(site: str, camera_id: str) -> None:
    """Camera ids repeat across tests (a fresh database each): start without an old series."""
    from ingest.metrics import CAMERA_UP

    try:
        CAMERA_UP.remove(site, camera_id)
    except KeyError:
        pass


def test_camera_up_is_removed_when_the_camera_moves_to_another_worker(
    factory: sessionmaker[Session], tmp_path: Path
) -> None:
    # Nothing listens there: every sample fails, camera_up 0 (a stale 0 pages as CameraDown).
    camera_id = make_camera(factory, f"http://127.0.0.1:{free_port()}/snap.jpg", interval_s=1.0)
    site, cam = str(camera(factory, camera_id).site_id), str(camera_id)
    _drop_camera_up(site, cam)
    service = IngestService(factory, FrameStore(tmp_path / "frames"), IngestOptions(lease_s=30), owner="worker-a").start()
    try:
        assert poll(lambda: _value("bearwatch_camera_up", site=site, camera=cam) == 0.0, timeout_s=20)
        assert service.cameras() == [camera_id]
        # worker-a's lease is over (it stalled); worker-b takes the camera
        with write_transaction(factory) as session:
            release_cameras(session, "worker-a")
            assert [s.id for s in claim_cameras(session, "worker-b", lease_s=30, now=utcnow())] == [camera_id]
        service.reconcile()
        assert service.cameras() == []
        assert _value("bearwatch_camera_up", site=site, camera=cam) is None
        assert _value("bearwatch_camera_last_frame_timestamp_seconds", site=site, camera=cam) is None
    finally:
        service.stop()
    assert _value("bearwatch_camera_up", site=site, camera=cam) is None


def test_a_stopped_worker_stops_exporting_its_cameras(factory: sessionmaker[Session], tmp_path: Path) -> None:
    with CameraHTTP() as cam_http:
        camera_id = make_camera(factory, cam_http.url("/snap.jpg"), interval_s=1.0)
        site, cam = str(camera(factory, camera_id).site_id), str(camera_id)
        _drop_camera_up(site, cam)
        service = IngestService(factory, FrameStore(tmp_path / "frames"), IngestOptions(lease_s=30)).start()
        try:
            assert poll(lambda: _value("bearwatch_camera_up", site=site, camera=cam) == 1.0, timeout_s=20)
        finally:
            service.stop()
    assert _value("bearwatch_camera_up", site=site, camera=cam) is None


def test_a_backoff_slot_is_a_slot_not_a_frame_captured(factory: sessionmaker[Session], tmp_path: Path) -> None:
    store = FrameStore(tmp_path / "frames")
    with CameraHTTP() as cam_http:
        good_id = make_camera(factory, cam_http.url("/snap.jpg"), name="good")
        good = CameraSampler(factory, store, CameraSpec(good_id, camera(factory, good_id).site_id, cam_http.url("/snap.jpg"), 5.0))
        site, cam = good.labels
        frames, stored = _frames_captured(site, cam), _slots(site, cam, "stored")
        assert good.sample() is Outcome.STORED
        assert _frames_captured(site, cam) == frames + 1
        assert _slots(site, cam, "stored") == stored + 1

    source = f"http://127.0.0.1:{free_port()}/snap.jpg"  # nothing listens: fails, then backs off
    down_id = make_camera(factory, source, name="down")
    down = CameraSampler(factory, store, CameraSpec(down_id, camera(factory, down_id).site_id, source, 5.0),
                         options=SamplerOptions(capture_timeout_s=2.0, backoff_cap_s=60.0))
    site, cam = down.labels
    frames, failed, backoff = _frames_captured(site, cam), _slots(site, cam, "failed"), _slots(site, cam, "backoff")
    assert down.sample() is Outcome.FAILED
    assert down.sample() is Outcome.BACKOFF
    assert _slots(site, cam, "failed") == failed + 1
    assert _slots(site, cam, "backoff") == backoff + 1
    assert _frames_captured(site, cam) == frames  # neither slot gave a frame


def test_a_missed_slot_is_a_slot_not_a_frame_captured(factory: sessionmaker[Session], tmp_path: Path) -> None:
    with CameraHTTP() as cam_http:
        # a JPEG sent a byte every 0.1 s: each sample outlasts the 0.5 s interval, slots are missed
        camera_id = make_camera(factory, cam_http.url("/trickle"), interval_s=0.5)
        site, cam = str(camera(factory, camera_id).site_id), str(camera_id)
        frames, missed = _frames_captured(site, cam), _slots(site, cam, "missed")
        options = IngestOptions(lease_s=10, sampler=SamplerOptions(capture_timeout_s=2.0, watchdog_grace_s=0.5))
        service = IngestService(factory, FrameStore(tmp_path / "frames"), options).start()
        try:
            assert poll(lambda: _slots(site, cam, "missed") - missed >= 2, timeout_s=20)
        finally:
            service.stop()
    assert _frames_captured(site, cam) == frames


def _non_loopback_ipv4() -> str:
    try:
        out = subprocess.run(["hostname", "-I"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        out = ""
    for address in out.split():
        if "." in address and not address.startswith("127."):
            return address
    pytest.skip("this machine has no non-loopback IPv4 address")


def _reachable(host: str, port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=5) as resp:
            return b"bearwatch_process_info" in resp.read()
    except OSError:
        return False


@pytest.mark.parametrize("address", [None, "0.0.0.0"])
def test_metrics_listen_on_loopback_unless_configured(address: str | None, monkeypatch: pytest.MonkeyPatch) -> None:
    from bearwatch.cli_common import serve_metrics

    outside = _non_loopback_ipv4()
    if address is None:
        monkeypatch.delenv("BEARWATCH_METRICS_ADDRESS", raising=False)
    else:
        monkeypatch.setenv("BEARWATCH_METRICS_ADDRESS", address)
    port = free_port()
    server = serve_metrics(port, "ingest")
    assert server is not None
    try:
        assert _reachable("127.0.0.1", port)
        assert _reachable(outside, port) is (address == "0.0.0.0")
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.timeout(180)
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # the dashboard's metrics do not depend on it
def test_the_dashboard_serves_its_metrics_before_anyone_opens_a_page(
    factory: sessionmaker[Session], database_url: str, tmp_path: Path
) -> None:
    port = free_port()
    env = {"BEARWATCH_DATABASE_URL": database_url, "BEARWATCH_DATA_DIR": str(tmp_path),
           "BEARWATCH_DASHBOARD_METRICS_PORT": str(port)}
    with running_dashboard(env):
        assert poll(lambda: _reachable("127.0.0.1", port), timeout_s=30)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
            text = resp.read().decode()
    assert 'bearwatch_process_info{part="dashboard"} 1.0' in text
    assert "bearwatch_dashboard_page_seconds" in text  # the page script's histogram: the same process
