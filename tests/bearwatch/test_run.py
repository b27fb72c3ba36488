"""`bearwatch run`: the whole system from a park file as supervised child processes
(real processes on a real database, the demo footage and model)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from bearwatch.db import make_engine, session_factory
from bearwatch.demo.model import TRAIN_DIR_NAME
from bearwatch.demo.run import write_demo_park
from bearwatch.schema import Heartbeat, Prediction, ProcessState
from tests.conftest import run_cli, wait_for


def _free_base_port() -> int:
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            base = int(sock.getsockname()[1])
        if base < 65000:
            return base


def _wait(what: str, check: Callable[[], bool], timeout: float = 240) -> None:
    wait_for(what, check, timeout, interval=0.5)  # the whole system starting on two cores: minutes


def _beats(factory: sessionmaker[Session]) -> dict[str, list[Heartbeat]]:
    with factory() as session:
        rows = session.scalars(sa.select(Heartbeat).order_by(Heartbeat.id)).all()
    out: dict[str, list[Heartbeat]] = {}
    for row in rows:
        out.setdefault(row.part, []).append(row)
    return out


@pytest.mark.slow
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_run_supervises_every_part_restarts_a_killed_worker_and_stops_in_order(
    data_env: dict[str, str], tmp_path: Path, model_export_path: Path, demo_footage: dict[str, Path]
) -> None:
    two_cameras = dict(list(demo_footage.items())[:2])
    park = write_demo_park(tmp_path, two_cameras, model_export_path, model_export_path.parent / TRAIN_DIR_NAME)
    assert run_cli("init", env=data_env).returncode == 0
    engine = make_engine(data_env["BEARWATCH_DATABASE_URL"])
    factory = session_factory(engine)
    log = (tmp_path / "run.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "bearwatch", "run", str(park), "--no-dashboard", "--metrics-base-port", str(_free_base_port()),
         "--stuck-after", "15"],
        env={**os.environ, **data_env}, stdout=log, stderr=subprocess.STDOUT,
    )
    try:
        def scoring() -> bool:
            with factory() as session:
                return bool(session.scalar(sa.select(sa.func.count()).select_from(Prediction)))

        _wait("frames sampled and scored through the supervised children", scoring)
        _wait("a heartbeat from every part", lambda: {"shadow", "inference", "ingest"} <= set(_beats(factory)))
        first_worker = _beats(factory)["inference"][-1].pid
        os.kill(first_worker, signal.SIGKILL)
        _wait("the inference worker restarted by the supervisor",
              lambda: any(b.pid != first_worker for b in _beats(factory)["inference"]))
        # a worker that is alive but frozen (no heartbeat, frames waiting) is restarted too
        second_worker = _beats(factory)["inference"][-1].pid
        os.kill(second_worker, signal.SIGSTOP)
        _wait("the frozen worker replaced", lambda: _beats(factory)["inference"][-1].pid not in (first_worker, second_worker),
              timeout=120)
        with factory() as session:  # and it scores again
            scored = session.scalar(sa.select(sa.func.count()).select_from(Prediction))
        _wait("scoring after the restart",
              lambda: (factory().scalar(sa.select(sa.func.count()).select_from(Prediction)) or 0) > (scored or 0))
        status = run_cli("status", env=data_env)
        assert status.returncode == 0
        for part in ("shadow", "inference", "ingest"):
            assert f"process {part} on" in status.stdout
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=120)
        log.close()
    assert code == 0, (tmp_path / "run.log").read_text()[-3000:]
    beats = _beats(factory)
    # every child that was running at the end stopped cleanly (the killed one could not say so)
    for part in ("shadow", "inference", "ingest"):
        assert beats[part][-1].state is ProcessState.STOPPED, part
    output = (tmp_path / "run.log").read_text()
    assert "killed by signal 9" in output
    assert "is stuck" in output
    # shutdown order: ingest stops before the inference worker, which stops before the shadow loop
    assert beats["ingest"][-1].beat_at <= beats["inference"][-1].beat_at <= beats["shadow"][-1].beat_at
    engine.dispose()
