"""Hostile image files dropped into a folder camera under a real `bearwatch ingest`.

A JPEG whose header claims 30000x30000, a PNG decompression bomb (30000x20000, 73 KB), a
2 GB sparse `.jpg` and a symbolic link to a picture outside the folder. What an operator
notices: each costs one slot, refused from its size or header with a reason in the log and
counted as `too_large` / `outside_folder` in `bearwatch_ingest_slots_total`; the
process's peak memory hardly moves; the camera's next good frame is stored at the next
slot (no reconnect backoff) and the camera is online again.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.orm import Session, sessionmaker

from bearwatch.schema import CameraHealth, CameraHealthEvent
from tests.ingest.helpers import camera, frames_of, free_port, jpeg, make_camera, poll, scene
from tests.ingest.hostile import MAX_SIDE, jpeg_claiming, png_bomb, sparse_file

T0 = datetime(2026, 7, 4, 22, 0, tzinfo=timezone.utc)


def _name(i: int, suffix: str = ".jpg") -> str:
    return f"cam_{T0 + timedelta(seconds=5 * i):%Y%m%dT%H%M%S}Z{suffix}"


def _memory_mib(pid: int, field: str) -> float:
    """VmRSS (now) or VmHWM (peak resident set) of a process, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no {field} in /proc/{pid}/status")


def _samples(port: int, camera_id: int) -> dict[str, float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    return {
        s.labels["outcome"]: s.value
        for family in text_string_to_metric_families(text) if family.name == "bearwatch_ingest_slots"
        for s in family.samples if s.name.endswith("_total") and s.labels.get("camera") == str(camera_id)
    }


@pytest.mark.timeout(180)
def test_hostile_files_in_a_folder_camera_cost_one_slot_each_and_no_memory(
    data_env: dict[str, str], factory: sessionmaker[Session], tmp_path: Path
) -> None:
    folder, staging, outside = tmp_path / "cam", tmp_path / "staging", tmp_path / "elsewhere"
    for path in (folder, staging, outside):
        path.mkdir()
    (folder / _name(0)).write_bytes(jpeg(scene(1)))
    camera_id = make_camera(factory, f"folder://{folder}", interval_s=0.5)
    # The hostile files, then good pictures; moved in in time order once ingest is running.
    (staging / _name(1)).write_bytes(jpeg_claiming(30000, 30000))
    (staging / _name(2, ".png")).write_bytes(png_bomb(30000, 20000))
    sparse_file(staging / _name(3))
    (outside / "secret.jpg").write_bytes(jpeg(scene(2)))
    (staging / _name(4)).symlink_to(outside / "secret.jpg")
    (staging / _name(5)).write_bytes(jpeg(scene(3)))
    (staging / _name(6)).write_bytes(jpeg(scene(4)))
    port = free_port()
    log = tmp_path / "ingest.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "bearwatch", "ingest", "--lease", "3", "--capture-timeout", "2",
         "--metrics-port", str(port)],
        env={**os.environ, **data_env}, stdout=log.open("wb"), stderr=subprocess.STDOUT,
    )
    try:
        assert poll(lambda: len(frames_of(factory, camera_id)) == 1, timeout_s=60), log.read_text()[-2000:]
        baseline_mib = _memory_mib(proc.pid, "VmRSS")
        started = time.monotonic()
        for path in sorted(staging.iterdir()):
            path.rename(folder / path.name)
        assert poll(lambda: len(frames_of(factory, camera_id)) == 3, timeout_s=60), camera(factory, camera_id).last_error
        elapsed = time.monotonic() - started
        peak_mib = _memory_mib(proc.pid, "VmHWM")
        assert poll(lambda: _samples(port, camera_id).get("stored") == 3, timeout_s=10)
        counted = _samples(port, camera_id)
    finally:
        proc.terminate()
        code = proc.wait(timeout=30)
    assert code == 0
    output = log.read_text()
    assert peak_mib - baseline_mib < 500, f"ingest grew from {baseline_mib:.0f} MiB to a {peak_mib:.0f} MiB peak"
    # Six slots of 0.5 s; a hung decode would have cost the watchdog (4 s) plus backoff.
    assert elapsed < 20, f"{elapsed:.1f}s to get past four hostile files"
    assert counted.get("too_large") == 3 and counted.get("outside_folder") == 1, counted
    assert counted.get("backoff", 0) == 0 and counted.get("failed", 0) == 0, counted
    cap = f"larger than {MAX_SIDE}x{MAX_SIDE} px"
    assert f"{_name(1)}: image 30000x30000 px is {cap}" in output
    assert f"{_name(2, '.png')}: image 30000x20000 px is {cap}" in output
    assert f"{_name(3)}: file of {2 * 1024**3} bytes is larger than the" in output
    assert f"{_name(4)}: a symbolic link to a file outside the image folder" in output
    assert [f.captured_at for f in frames_of(factory, camera_id)] == [T0, T0 + timedelta(seconds=25),
                                                                       T0 + timedelta(seconds=30)]
    row = camera(factory, camera_id)
    assert row.health is CameraHealth.ONLINE and row.last_error is None
    with factory() as session:  # the stored health history says why the camera was not online
        reasons = session.scalars(
            sa.select(CameraHealthEvent.reason).where(CameraHealthEvent.camera_id == camera_id)
        ).all()
    assert any(f"image 30000x30000 px is {cap}" in r for r in reasons), reasons
