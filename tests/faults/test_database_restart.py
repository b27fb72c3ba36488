"""PostgreSQL restarted under a running `bearwatch run --no-dashboard`.

The test runs its own PostgreSQL server (tests/faults/conftest.py `private_pg`) and
restarts that one, never the shared server other test runs use. What an operator
would notice: after the restart, without anyone touching bearwatch, new frames are
still sampled and scored, and new alerts still reach the webhook, each exactly once.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml
from sqlalchemy.orm import Session, sessionmaker

from bearwatch.db import make_engine, session_factory
from bearwatch.schema import (
    Alert,
    AlertStatus,
    Frame,
    FrameStatus,
    Prediction,
    Site,
    Stage,
    utcnow,
)
from shadow.rollout import record_stage_change
from tests.conftest import run_cli
from tests.faults.conftest import PrivatePostgres
from tests.ingest.helpers import free_port
from tests.shadow.receiver import Receiver


def wait_for(what: str, check: Callable[[], bool], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if check():
                return
        except sa.exc.OperationalError:
            pass  # our own probe during the restart
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.5)


def write_park(directory: Path, clips: list[Path], model: Path, webhook: str) -> Path:
    """One site, two cameras sampled every second, a model threshold that flags every
    frame and no alert cooldown: each frame is one alert, so alerts keep coming."""
    park = {
        "sites": [{"name": "north", "thresholds": {"alert_cooldown_s": 0},
                   "cameras": [{"name": f"cam{i}", "source": str(c), "interval": 1.0} for i, c in enumerate(clips)]}],
        "models": [{"name": "demo-bear", "path": str(model), "positive": ["bear"], "threshold": 0.0,
                    "sites": ["north"]}],
        "alerts": {"channels": [{"name": "ops-hook", "kind": "webhook", "url": webhook}]},
    }
    path = directory / "park.yaml"
    path.write_text(yaml.safe_dump(park), encoding="utf-8")
    return path


def expand(factory: sessionmaker[Session]) -> None:
    """Put the site in expanded (alerts go out at once), as an admin override would."""
    with factory.begin() as session:
        site = session.scalar(sa.select(Site).where(Site.name == "north").with_for_update())
        assert site is not None
        now = utcnow()
        record_stage_change(session, site, Stage.LIMITED, actor="test", reason="fault test", now=now,
                            trial=(now, now + timedelta(days=7)))
        record_stage_change(session, site, Stage.EXPANDED, actor="test", reason="fault test", now=utcnow())


def scored_after(factory: sessionmaker[Session], since: datetime) -> int:
    with factory() as session:
        return session.scalar(
            sa.select(sa.func.count(sa.distinct(Prediction.frame_id))).join(Frame, Frame.id == Prediction.frame_id)
            .where(Frame.captured_at > since)
        ) or 0


def alerts_sent_after(factory: sessionmaker[Session], since: datetime) -> int:
    with factory() as session:
        return session.scalar(
            sa.select(sa.func.count()).select_from(Alert).join(Frame, Frame.id == Alert.frame_id)
            .where(Frame.captured_at > since, Alert.status == AlertStatus.SENT)
        ) or 0


@pytest.mark.timeout(300)
def test_every_part_reconnects_after_a_postgresql_restart_and_nothing_is_lost(
    private_pg: PrivatePostgres, tmp_path: Path, model_export_path: Path, demo_footage: dict[str, Path]
) -> None:
    env = {"BEARWATCH_DATABASE_URL": private_pg.url, "BEARWATCH_DATA_DIR": str(tmp_path / "data")}
    assert run_cli("init", env=env).returncode == 0
    receiver = Receiver(free_port())
    receiver.start()
    park = write_park(tmp_path, list(demo_footage.values())[:2], model_export_path, receiver.url)
    assert run_cli("config", "apply", str(park), env=env).returncode == 0
    engine = make_engine(private_pg.url)
    factory = session_factory(engine)
    expand(factory)
    log = (tmp_path / "run.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "bearwatch", "run", str(park), "--no-dashboard", "--device", "cpu",
         "--metrics-base-port", str(free_port())],
        env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT,
    )
    try:
        start = utcnow()
        wait_for("frames sampled, scored and alerted before the restart", lambda: alerts_sent_after(factory, start) > 0)
        private_pg.stop()
        time.sleep(3)  # the database is away for a few seconds: every client connection was cut
        private_pg.start()
        back = utcnow()
        wait_for("frames captured after the restart scored", lambda: scored_after(factory, back) >= 4)
        wait_for("alerts for frames after the restart delivered", lambda: alerts_sent_after(factory, back) >= 4)
        assert proc.poll() is None, "bearwatch run gave up"
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=120)
        log.close()
        receiver.stop()
    output = (tmp_path / "run.log").read_text()
    assert code == 0, output[-3000:]
    with factory() as session:
        sent_keys = list(session.scalars(sa.select(Alert.idempotency_key).where(Alert.status == AlertStatus.SENT)))
        per_frame = session.execute(
            sa.select(Prediction.frame_id, sa.func.count()).group_by(Prediction.frame_id).having(sa.func.count() > 1)
        ).all()
        stuck = session.scalar(sa.select(sa.func.count()).where(Frame.status == FrameStatus.FAILED))
    engine.dispose()
    # every alert marked sent reached the receiver exactly once; nothing was scored twice or failed
    assert set(receiver.keys) >= set(sent_keys) and set(receiver.keys.values()) == {1}
    assert per_frame == [] and stuck == 0
    # each part reconnected by itself: the supervisor never had to restart one
    assert "restarting in" not in output and "Traceback" not in output, _around(output, ("restarting in", "Traceback"))
    assert "lost the database connection" in output  # the inference worker waited it out


def _around(output: str, words: tuple[str, ...], lines: int = 40) -> str:
    """The log from a little before the first line holding one of ``words``: what went wrong."""
    text = output.splitlines()
    first = next((i for i, line in enumerate(text) if any(w in line for w in words)), len(text))
    return "\n".join(text[max(0, first - 5):first + lines])
