"""The frame store's disk full or read-only under a real `bearwatch ingest` on PostgreSQL.

Real faults, not simulated: the frames directory is a size-limited tmpfs (ENOSPC once
full) or a read-only bind mount (EROFS). Root ignores directory permissions, so a mount
is the only honest way to make writing fail for root; the test is skipped where mounting
is not permitted (an unprivileged container). A store root that is a file (ENOTDIR) is
tests/ingest/test_scheduler.py `test_no_row_without_a_file_and_no_file_without_a_row`.

What an operator notices: `bearwatch status` shows the camera degraded/offline with the
reason; no frame row lacks its file (and no half-written file is left); once space is
freed (or the mount is writable again) the camera comes back online by itself.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from bearwatch.db import make_engine, session_factory
from bearwatch.migrations import upgrade_to_head
from bearwatch.schema import Camera, CameraHealth, Frame
from tests.conftest import run_cli
from tests.ingest.helpers import make_camera, poll

TMPFS_BYTES = 512 * 1024


def _mount(*args: str) -> None:
    done = subprocess.run(["mount", *args], check=False, capture_output=True, text=True)
    if done.returncode != 0:
        raise PermissionError(done.stderr.strip() or "mount failed")


def _can_mount(tmp_path: Path) -> str | None:
    probe = tmp_path / "probe"
    probe.mkdir()
    try:
        _mount("-t", "tmpfs", "-o", "size=64k", "tmpfs", str(probe))
    except (PermissionError, FileNotFoundError) as exc:
        return f"mounting is not permitted here ({exc}); needs root with CAP_SYS_ADMIN"
    subprocess.run(["umount", str(probe)], check=True)
    return None


@pytest.fixture
def frames_dir(tmp_path: Path) -> Iterator[Path]:
    problem = _can_mount(tmp_path)
    if problem:
        pytest.skip(problem)
    path = tmp_path / "data" / "frames"
    path.mkdir(parents=True)
    yield path
    subprocess.run(["umount", "-l", str(path)], check=False, capture_output=True)


@pytest.fixture
def ingest_env(pg_url: str, tmp_path: Path) -> Iterator[tuple[dict[str, str], sessionmaker[Session]]]:
    engine = make_engine(pg_url)
    upgrade_to_head(engine)
    yield {"BEARWATCH_DATABASE_URL": pg_url, "BEARWATCH_DATA_DIR": str(tmp_path / "data")}, session_factory(engine)
    engine.dispose()


def _ingest(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "bearwatch", "ingest", "--lease", "3", "--capture-timeout", "2"],
        env={**os.environ, **env}, stdout=log.open("wb"), stderr=subprocess.STDOUT,
    )


def _camera(factory: sessionmaker[Session], camera_id: int) -> Camera:
    with factory() as session:
        row = session.get(Camera, camera_id)
        assert row is not None
        return row


def _frame_count(factory: sessionmaker[Session]) -> int:
    with factory() as session:
        return session.scalar(sa.select(sa.func.count()).select_from(Frame)) or 0


def _assert_no_row_without_its_file(factory: sessionmaker[Session], root: Path) -> int:
    with factory() as session:
        frames = list(session.scalars(sa.select(Frame)))
    for frame in frames:
        data = (root / frame.path).read_bytes()
        assert len(data) == frame.size_bytes and hashlib.sha256(data).hexdigest() == frame.sha256, frame.path
    stored = {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file() and p.name != "filler"}
    assert stored == {f.path for f in frames}, "a file without a row, or a temp file left behind"
    return len(frames)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("fault", ["disk_full", "read_only"])
def test_a_frame_store_that_cannot_write_marks_the_camera_and_stores_no_row_without_a_file(
    fault: str, frames_dir: Path, ingest_env: tuple[dict[str, str], sessionmaker[Session]], tmp_path: Path,
    demo_footage: dict[str, Path],
) -> None:
    env, factory = ingest_env
    camera_id = make_camera(factory, str(next(iter(demo_footage.values()))), interval_s=0.5)
    if fault == "disk_full":
        _mount("-t", "tmpfs", "-o", f"size={TMPFS_BYTES}", "tmpfs", str(frames_dir))
        filler = frames_dir / "filler"  # leaves room for a few frames only
        with filler.open("wb") as fh:
            fh.write(os.urandom(TMPFS_BYTES - 160 * 1024))
        expected = "No space left on device"
    else:
        writable = tmp_path / "writable"
        writable.mkdir()
        _mount("--bind", str(writable), str(frames_dir))
        _mount("-o", "remount,bind,ro", str(frames_dir))
        expected = "Read-only file system"
    proc = _ingest(env, tmp_path / f"ingest-{uuid.uuid4().hex[:6]}.log")
    try:
        assert poll(lambda: expected in (_camera(factory, camera_id).last_error or ""), timeout_s=60), \
            _camera(factory, camera_id).last_error
        assert poll(lambda: _camera(factory, camera_id).health is CameraHealth.OFFLINE, timeout_s=30)
        status = run_cli("status", env=env)
        assert status.returncode == 0
        assert "offline" in status.stdout and f"frame store: cannot write the frame: {expected}" in status.stdout
        stored_while_broken = _assert_no_row_without_its_file(factory, frames_dir)
        if fault == "disk_full":
            assert stored_while_broken >= 1  # it worked until the disk filled up
            (frames_dir / "filler").unlink()  # the operator frees space
        else:
            assert stored_while_broken == 0
            _mount("-o", "remount,bind,rw", str(frames_dir))  # the operator fixes the mount
        # A write can squeeze in while the disk is nearly full (a failed write's temp file
        # is removed), so the camera may be online already: wait for a frame stored after the fix.
        assert poll(lambda: _frame_count(factory) > stored_while_broken, timeout_s=30), "no frame stored after the fix"
        assert poll(lambda: _camera(factory, camera_id).health is CameraHealth.ONLINE, timeout_s=30)
        assert _camera(factory, camera_id).last_error is None
    finally:
        proc.terminate()
        code = proc.wait(timeout=30)
    assert code == 0
    assert _assert_no_row_without_its_file(factory, frames_dir) > stored_while_broken
