"""The shadow loop as real `bearwatch shadow` processes, with a real webhook receiver."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from bearwatch.schema import Alert, AlertStatus, ChannelKind, Role, Stage, utcnow
from tests.conftest import run_cli, wait_for
from tests.shadow.helpers import add_channel, add_frame, add_user, make_park
from tests.shadow.receiver import Receiver, free_port


class Loop:
    def __init__(self, env: dict[str, str], log: Path, *extra: str) -> None:
        self.log = log
        self.fh = log.open("w")
        self.proc = subprocess.Popen([sys.executable, "-m", "bearwatch", "shadow", "--interval", "0.2", *extra],
                                     env={**os.environ, **env}, stdout=self.fh, stderr=subprocess.STDOUT)

    def output(self) -> str:
        return self.log.read_text()

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        code = self.proc.wait(timeout=20)
        self.fh.close()
        return code


def _statuses(factory: sessionmaker[Session]) -> dict[int, AlertStatus]:
    with factory() as session:
        return dict(session.execute(sa.select(Alert.frame_id, Alert.status)).all())


@pytest.mark.timeout(120)
def test_limited_site_end_to_end(cli_db: sessionmaker[Session], data_env: dict[str, str], tmp_path: Path) -> None:
    now = utcnow()
    park = make_park(cli_db, stage=Stage.LIMITED, trial=(now - timedelta(hours=1), now + timedelta(days=7)),
                     thresholds={"alert_cooldown_s": 0})
    receiver = Receiver(free_port())  # down until started below
    add_channel(cli_db, "ops-hook", ChannelKind.WEBHOOK, receiver.url)
    add_user(cli_db, "ana", Role.RANGER)
    metrics_port = free_port()
    loop = Loop(data_env, tmp_path / "loop.log", "--metrics-port", str(metrics_port))
    try:
        bear = add_frame(cli_db, park.cameras[0], now - timedelta(seconds=30), model_id=park.model_id, score=0.95)
        rock = add_frame(cli_db, park.cameras[1], now - timedelta(seconds=20), model_id=park.model_id, score=0.6)
        wait_for("held alerts", lambda: _statuses(cli_db) == {bear: AlertStatus.PENDING, rock: AlertStatus.PENDING})
        as_ana = {**data_env, "BEARWATCH_USER": "ana"}
        assert run_cli("verdict", str(bear), "confirm", env=as_ana).returncode == 0
        assert run_cli("verdict", str(rock), "dismiss", env=as_ana).returncode == 0
        wait_for("a failed delivery try (the receiver is down)", lambda: 'outcome="retry"' in
                 httpx.get(f"http://127.0.0.1:{metrics_port}/metrics").text, timeout=30)
        assert _statuses(cli_db) == {bear: AlertStatus.QUEUED, rock: AlertStatus.SUPPRESSED}
        receiver.start()
        wait_for("the confirmed alert delivered", lambda: _statuses(cli_db)[bear] is AlertStatus.SENT, timeout=30)
        assert list(receiver.keys.values()) == [1] and receiver.bodies[0]["frame_id"] == bear
        metrics = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics").text
        assert f'bearwatch_alerts_total{{site="{park.site_id}",stage="limited",status="pending"}} 2.0' in metrics
        assert 'bearwatch_alert_deliveries_total{channel="ops-hook",outcome="delivered"} 1.0' in metrics
        assert 'bearwatch_alert_deliveries_total{channel="ops-hook",outcome="retry"}' in metrics
        wait_for("the outbox depth gauge at 0", lambda: "bearwatch_alert_outbox_depth 0.0" in
                 httpx.get(f"http://127.0.0.1:{metrics_port}/metrics").text, timeout=15)
        assert loop.stop() == 0
    finally:
        loop.stop(signal.SIGKILL)
        receiver.stop()
    out = loop.output()
    assert "shadow loop: jobs alerts, deliver, outbox_depth" in out and "shadow loop: stopped" in out
    assert "secret-token" not in out  # the webhook URL's secret path never reaches the log


@pytest.mark.timeout(120)
def test_one_leader_on_postgresql_and_a_takeover(pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env = {"BEARWATCH_DATA_DIR": str(tmp_path / "data"), "BEARWATCH_DATABASE_URL": pg_url}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    assert run_cli("init", env=env).returncode == 0
    first = Loop(env, tmp_path / "first.log")
    second: Loop | None = None
    try:
        wait_for("the first loop to lead", lambda: "shadow loop: leader" in first.output())
        second = Loop(env, tmp_path / "second.log")
        wait_for("the second loop to wait", lambda: "waiting, another shadow loop is the leader" in second.output())
        first.stop(signal.SIGKILL)  # dies without letting go: the server frees the lock
        wait_for("the second loop to take over", lambda: "shadow loop: leader" in second.output())
        assert second.stop() == 0
    finally:
        first.stop(signal.SIGKILL)
        if second is not None:
            second.stop(signal.SIGKILL)
