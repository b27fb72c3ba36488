"""Inference workers that die or freeze mid-batch, on PostgreSQL with real processes.

SIGKILL mid-batch is tests/inference/test_workers_processes.py
(`test_sigkill_mid_batch_loses_nothing_and_scores_nothing_twice`): every frame still
gets exactly one prediction per active model. Here: a worker frozen (SIGSTOP) past its
lease, whose batch another worker takes and scores; when it is thawed (SIGCONT) its
late commit (or its claim's, ended by the server meanwhile) changes nothing.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from bearwatch.schema import Frame, FrameQueueEntry, FrameStatus, ModelRole, Prediction, utcnow
from ingest.store import FrameStore
from tests.conftest import wait_for
from tests.inference.helpers import register, store_frames_at

LEASE_S = 3


def _infer(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "bearwatch", "infer", "--device", "cpu", "--batch-size", "8", "--lease", str(LEASE_S),
         "--decode-threads", "1"],
        env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=log.open("wb"),
    )


def _thawed(log: Path) -> bool:
    """The thawed worker's first word: frozen between statements, it scores its batch and
    finds the lease gone at commit; frozen inside a claim transaction, the server has ended
    that transaction and its connection (db.WRITE_IDLE_LIMIT_S) and it drops what it holds."""
    text = log.read_text(errors="replace")
    return "lost the lease" in text or "lost the database connection" in text


@pytest.mark.timeout(240)
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_worker_frozen_past_its_lease_commits_nothing_when_thawed(
    factory: sessionmaker[Session], database_url: str, tmp_path: Path, model_export_path: Path
) -> None:
    env = {"BEARWATCH_DATABASE_URL": database_url, "BEARWATCH_DATA_DIR": str(tmp_path)}
    ids = store_frames_at(factory, FrameStore(tmp_path / "frames"), [t * 0.9 for t in range(48)])
    register(factory, model_export_path, "demo")
    register(factory, model_export_path, "challenger", ModelRole.CHALLENGER, threshold=0.8)
    frozen_log, other_log = tmp_path / "frozen.log", tmp_path / "other.log"
    frozen = _infer(env, frozen_log)
    other: subprocess.Popen[bytes] | None = None
    frozen_id = f"{os.uname().nodename}:{frozen.pid}"

    def held() -> set[int]:
        with factory() as session:
            return set(session.scalars(sa.select(FrameQueueEntry.frame_id).where(FrameQueueEntry.claimed_by == frozen_id)))

    try:
        wait_for("the first worker to claim a batch", lambda: bool(held()), 120, interval=0.02)
        frozen.send_signal(signal.SIGSTOP)
        frozen_at = utcnow()
        taken = held()
        assert taken, "the worker committed its batch before it could be frozen"
        other = _infer(env, other_log)

        def all_scored() -> bool:
            with factory() as session:
                return not session.scalar(sa.select(sa.func.count()).where(Frame.status != FrameStatus.SCORED))

        wait_for("the second worker to score every frame, the frozen one's batch included", all_scored, 180, interval=0.02)
        with factory() as session:
            before = set(session.execute(sa.select(Prediction.id, Prediction.frame_id, Prediction.scored_at)).all())
        frozen.send_signal(signal.SIGCONT)
        wait_for("the thawed worker to find its lease or its connection gone", lambda: _thawed(frozen_log), 60, interval=0.02)
    finally:
        for proc in (frozen, other):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGCONT)
                proc.send_signal(signal.SIGTERM)
        for proc in (frozen, other):
            if proc is not None:
                proc.wait(timeout=60)
    assert frozen.returncode == 0 and other is not None and other.returncode == 0, other_log.read_text()[-2000:]
    with factory() as session:
        after = set(session.execute(sa.select(Prediction.id, Prediction.frame_id, Prediction.scored_at)).all())
        per_frame = dict(
            session.execute(sa.select(Prediction.frame_id, sa.func.count()).group_by(Prediction.frame_id)).all()
        )
    assert after == before, "the late commit changed the predictions"
    assert per_frame == {i: 2 for i in ids}, "exactly one prediction per frame and active model"
    # the frozen worker's batch was scored while it was frozen: by the second worker
    assert all(scored_at > frozen_at for _, frame_id, scored_at in after if frame_id in taken)
