"""Real `bearwatch infer` processes killed mid-batch and one sharing the queue with them, on both databases."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from bearwatch.schema import Frame, FrameQueueEntry, FrameStatus, ModelRole, Prediction
from ingest.store import FrameStore
from tests.inference.helpers import register, store_frames_at


def _infer(env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "bearwatch", "infer", "--device", "cpu", "--batch-size", "8", "--lease", "5",
         "--decode-threads", "1"],
        env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )


def _wait_for_a_claim(factory: sessionmaker[Session], worker_id: str) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        with factory() as session:
            if session.scalar(sa.select(sa.func.count()).where(FrameQueueEntry.claimed_by == worker_id)):
                return
        time.sleep(0.02)
    pytest.fail(f"{worker_id} never claimed a batch")


@pytest.mark.timeout(600)
def test_repeated_sigkills_mid_batch_lose_nothing_and_score_nothing_twice(
    factory: sessionmaker[Session], database_url: str, tmp_path: Path, model_export_path: Path
) -> None:
    """Three workers SIGKILLed one after another, each as soon as it holds a claimed batch
    (so the kill lands between the claim and the commit), then one that runs to the end
    beside a fourth victim: every frame is scored exactly once per active model."""
    env = {"BEARWATCH_DATABASE_URL": database_url, "BEARWATCH_DATA_DIR": str(tmp_path)}
    ids = store_frames_at(factory, FrameStore(tmp_path / "frames"), [t * 0.9 for t in range(120)])
    register(factory, model_export_path, "demo")
    register(factory, model_export_path, "challenger", ModelRole.CHALLENGER, threshold=0.8)
    procs: list[subprocess.Popen[bytes]] = []
    survivor: subprocess.Popen[bytes] | None = None
    try:
        for _ in range(3):
            victim = _infer(env)
            procs.append(victim)
            _wait_for_a_claim(factory, f"{os.uname().nodename}:{victim.pid}")
            victim.send_signal(signal.SIGKILL)
            victim.wait(timeout=10)
        # The fourth victim starts first and the survivor beside it once it holds a batch:
        # started together, the survivor could take every frame left before the victim's
        # first claim (seen in CI under load: the victim "never claimed a batch").
        victim = _infer(env)
        procs.append(victim)
        _wait_for_a_claim(factory, f"{os.uname().nodename}:{victim.pid}")
        survivor = _infer(env)
        procs.append(survivor)
        victim.send_signal(signal.SIGKILL)
        deadline = time.monotonic() + 240  # the killed claims come back when their 5 s leases end
        while time.monotonic() < deadline:
            with factory() as session:
                left = session.scalar(sa.select(sa.func.count()).where(Frame.status != FrameStatus.SCORED))
            if not left:
                break
            time.sleep(0.5)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            proc.wait(timeout=60)
    assert survivor is not None
    assert [p.returncode for p in procs[:3]] == [-signal.SIGKILL] * 3
    assert survivor.returncode == 0, survivor.stderr.read().decode()[-2000:] if survivor.stderr else ""
    with factory() as session:
        per_frame = dict(
            session.execute(sa.select(Prediction.frame_id, sa.func.count()).group_by(Prediction.frame_id)).all()
        )
        statuses = set(session.scalars(sa.select(Frame.status)))
    assert statuses == {FrameStatus.SCORED}
    assert per_frame == {i: 2 for i in ids}, "exactly one prediction per frame and active model"


@pytest.mark.timeout(300)
def test_sigterm_with_batches_claimed_ahead_exits_cleanly_and_leaves_no_frame_claimed(
    factory: sessionmaker[Session], database_url: str, tmp_path: Path, model_export_path: Path
) -> None:
    """The overlapped pipeline holds several batches at once (one scored, two claimed ahead,
    commits in flight): SIGTERM ends the process with status 0, what was scored is committed
    and every other claim goes back to the queue with no attempt counted."""
    env = {"BEARWATCH_DATABASE_URL": database_url, "BEARWATCH_DATA_DIR": str(tmp_path)}
    ids = store_frames_at(factory, FrameStore(tmp_path / "frames"), [t * 0.9 for t in range(80)])
    register(factory, model_export_path, "demo")
    proc = _infer(env)
    try:
        _wait_for_a_claim(factory, f"{os.uname().nodename}:{proc.pid}")
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, proc.stderr.read().decode()[-2000:] if proc.stderr else ""
    with factory() as session:
        queued = session.execute(sa.select(FrameQueueEntry.frame_id, FrameQueueEntry.claimed_until,
                                           FrameQueueEntry.attempts)).all()
        scored = set(session.scalars(sa.select(Frame.id).where(Frame.status == FrameStatus.SCORED)))
        predicted = session.execute(sa.select(Prediction.frame_id, sa.func.count()).group_by(Prediction.frame_id)).all()
    assert all(q.claimed_until is None and q.attempts == 0 for q in queued), queued
    assert {q.frame_id for q in queued} | scored == set(ids)  # each frame scored, or back in the queue
    assert dict(predicted) == {i: 1 for i in scored}
