"""`bearwatch demo` end to end: real footage, real model, real processes."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from bearwatch.demo.model import DEMO_MODEL_NAME, TRAIN_DIR_NAME
from tests.conftest import DEMO_MODEL_TIMEOUT_S

pytestmark = pytest.mark.timeout(DEMO_MODEL_TIMEOUT_S)  # they wait on training the demo model
# Before it samples or serves, every demo run replays three weeks of a third site's history:
# about a minute on a quiet machine, over four minutes at a load of 5 on two cores.
DEMO_START_S = 600


def _seed_demo_cache(data_dir: Path, footage: dict[str, Path], model: Path) -> None:
    """Put this session's footage and model where the demo caches them (made once),
    so the test exercises the demo itself rather than training again."""
    for path in footage.values():
        for sibling in (path, path.with_suffix(".json")):
            (data_dir / "demo" / "footage").mkdir(parents=True, exist_ok=True)
            shutil.copy(sibling, data_dir / "demo" / "footage" / sibling.name)
    (data_dir / "demo" / "model").mkdir(parents=True, exist_ok=True)
    shutil.copy(model, data_dir / "demo" / "model" / DEMO_MODEL_NAME)
    shutil.copytree(model.parent / TRAIN_DIR_NAME, data_dir / "demo" / "model" / TRAIN_DIR_NAME)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class HeadlessDemo:
    data_dir: Path
    result: subprocess.CompletedProcess[str]


@pytest.fixture(scope="module")
def headless_demo(
    tmp_path_factory: pytest.TempPathFactory, demo_footage: dict[str, Path], demo_model_path: Path
) -> HeadlessDemo:
    """One 20 s headless demo on a fresh data dir: its history replay is most of the module's
    time, so the dashboard test starts from a copy of this park (a rerun replays nothing)."""
    data_dir = tmp_path_factory.mktemp("headless-demo") / "data"
    _seed_demo_cache(data_dir, demo_footage, demo_model_path)
    result = subprocess.run(
        [sys.executable, "-m", "bearwatch", "demo", "--duration", "20", "--no-dashboard"],
        env=_demo_env(data_dir), capture_output=True, text=True, timeout=DEMO_START_S + 120,
    )
    return HeadlessDemo(data_dir, result)


def _demo_env(data_dir: Path, **extra: str) -> dict[str, str]:
    env = {**os.environ, "BEARWATCH_DATA_DIR": str(data_dir), **extra}
    env.pop("BEARWATCH_DATABASE_URL", None)  # the embedded SQLite default
    return env


def test_headless_demo_samples_scores_and_prints_a_summary(headless_demo: HeadlessDemo) -> None:
    result, data_dir, env = headless_demo.result, headless_demo.data_dir, _demo_env(headless_demo.data_dir)
    assert result.returncode == 0, result.stderr[-3000:]
    match = re.search(r"frames sampled (\d+), frames scored (\d+), flagged (\d+)", result.stdout)
    assert match, result.stdout
    sampled, scored, _flagged = map(int, match.groups())
    assert sampled >= 4 * 5  # four cameras every 2 s for 20 s, allowing for start-up
    assert scored >= sampled * 0.9
    assert (data_dir / "bearwatch.db").is_file()
    status = subprocess.run([sys.executable, "-m", "bearwatch", "status"], env=env, capture_output=True, text=True)
    assert "site north: manual" in status.stdout and "site lake: manual" in status.stdout
    # the live parts ran as supervised processes and stopped cleanly
    for part in ("shadow", "inference", "ingest"):
        assert re.search(rf"process {part} on \S+ pid \d+: stopped", status.stdout), status.stdout
    # a third site's replayed history took it further along, through its gates as ops would
    # (the simulated trial's numbers vary with the clock: usually both gates pass)
    further = re.search(r"site meadow: (limited|expanded)\n", result.stdout)
    assert further, result.stdout
    assert f"site meadow: {further.group(1)}" in status.stdout
    ledger = subprocess.run([sys.executable, "-m", "bearwatch", "ledger", "--site", "meadow"], env=env,
                            capture_output=True, text=True)
    assert ledger.returncode == 0, ledger.stderr
    assert "meadow: manual -> limited by ops (demo history), model" in ledger.stdout
    promotions = 2 if further.group(1) == "expanded" else 1
    assert ledger.stdout.count("gate pass") == promotions
    assert "by guard" not in ledger.stdout


def test_a_rerun_of_the_demo_serves_the_dashboard_and_stops_cleanly_on_sigterm(
    headless_demo: HeadlessDemo, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    shutil.copytree(headless_demo.data_dir, data_dir)  # `make demo` again on the same data dir
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "bearwatch", "demo"], env=_demo_env(data_dir, BEARWATCH_DASHBOARD_PORT=str(port)),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        # Generous: on a loaded machine the demo prepares its park before the dashboard starts.
        # A demo that died is reported at once, with its output.
        deadline, health = time.monotonic() + DEMO_START_S, ""
        while time.monotonic() < deadline and health != "ok":
            if proc.poll() is not None:
                pytest.fail(f"the demo exited ({proc.returncode}) before its dashboard answered: "
                            f"{(proc.stdout.read() if proc.stdout else '')[-3000:]}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as resp:
                    health = resp.read().decode()
            except OSError:
                time.sleep(1)
        assert health == "ok", "the dashboard never answered"
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out[-3000:]
    assert f"dashboard: http://127.0.0.1:{port}/" in out
    # the park, its login and its replayed history are kept: nothing is made twice
    assert "dashboard login: a user from `bearwatch user list`" in out
    assert "days of history replayed" not in out and "training the demo model" not in out
    assert "demo summary: frames sampled" in out
    with pytest.raises(OSError):  # the dashboard went down with the demo
        urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2)
