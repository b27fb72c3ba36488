"""Two real `bearwatch infer` processes sharing one PostgreSQL queue."""

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

from bearwatch.schema import Frame, FrameStatus, ModelRole, Prediction
from ingest.store import FrameStore
from tests.inference.helpers import register, store_frames_at


def _infer(env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "bearwatch", "infer", "--device", "cpu", "--batch-size", "8", "--lease", "5",
         "--decode-threads", "1"],
        env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_sigkill_mid_batch_loses_nothing_and_scores_nothing_twice(
    factory: sessionmaker[Session], database_url: str, tmp_path: Path, model_export_path: Path
) -> None:
    env = {"BEARWATCH_DATABASE_URL": database_url, "BEARWATCH_DATA_DIR": str(tmp_path)}
    ids = store_frames_at(factory, FrameStore(tmp_path / "frames"), [t * 0.9 for t in range(120)])
    register(factory, model_export_path, "demo")
    register(factory, model_export_path, "challenger", ModelRole.CHALLENGER, threshold=0.8)
    victim, survivor = _infer(env), _infer(env)
    try:
        victim_id = f"{os.uname().nodename}:{victim.pid}"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # wait until the victim holds a claimed batch
            with factory() as session:
                if session.scalar(sa.select(sa.func.count()).where(Frame.claimed_by == victim_id)):
                    break
            time.sleep(0.02)
        else:
            pytest.fail("the victim never claimed a batch")
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=10)
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            with factory() as session:
                left = session.scalar(sa.select(sa.func.count()).where(Frame.status != FrameStatus.SCORED))
            if not left:
                break
            time.sleep(0.5)
    finally:
        for proc in (victim, survivor):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        survivor.wait(timeout=60)
    assert survivor.returncode == 0, survivor.stderr.read().decode()[-2000:] if survivor.stderr else ""
    with factory() as session:
        per_frame = dict(
            session.execute(sa.select(Prediction.frame_id, sa.func.count()).group_by(Prediction.frame_id)).all()
        )
        statuses = set(session.scalars(sa.select(Frame.status)))
    assert statuses == {FrameStatus.SCORED}
    assert per_frame == {i: 2 for i in ids}, "exactly one prediction per frame and active model"
