"""The Prometheus rules and scrape config in deploy/prometheus, checked by the real
promtool, and a real Prometheus server scraping a running bearwatch process."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from sqlalchemy.orm import Session, sessionmaker

from ingest.store import FrameStore
from tests.inference.helpers import store_frames_at

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"
needs_prometheus = pytest.mark.skipif(
    shutil.which("promtool") is None or shutil.which("prometheus") is None,
    reason="Debian's prometheus package is installed by `make test`",
)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@needs_prometheus
def test_rules_and_scrape_config_are_valid() -> None:
    rules = subprocess.run(["promtool", "check", "rules", "bearwatch.rules.yml"], cwd=DEPLOY, capture_output=True, text=True)
    assert rules.returncode == 0, rules.stdout + rules.stderr
    config = subprocess.run(["promtool", "check", "config", "prometheus.yml"], cwd=DEPLOY, capture_output=True, text=True)
    assert config.returncode == 0, config.stdout + config.stderr


@needs_prometheus
def test_alert_rules_fire_when_they_should_and_only_then() -> None:
    result = subprocess.run(
        ["promtool", "test", "rules", "bearwatch.rules.test.yml"], cwd=DEPLOY, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_rule_has_a_unit_test_that_makes_it_fire() -> None:
    rules = yaml.safe_load((DEPLOY / "bearwatch.rules.yml").read_text(encoding="utf-8"))
    tests = yaml.safe_load((DEPLOY / "bearwatch.rules.test.yml").read_text(encoding="utf-8"))
    alerts = {rule["alert"] for group in rules["groups"] for rule in group["rules"] if "alert" in rule}
    fired = {
        (case["alertname"], tuple(sorted(alert["exp_labels"].items())))
        for test in tests["tests"] for case in test.get("alert_rule_test", []) for alert in case["exp_alerts"]
    }
    assert alerts == {name for name, _ in fired}
    # one absent() rule per bearwatch process, each tested, and each process scraped
    from bearwatch.metrics import PARTS

    missing = {dict(labels).get("part") for name, labels in fired if name == "BearwatchProcessMissing"}
    assert missing == set(PARTS)
    scrape = yaml.safe_load((DEPLOY / "prometheus.yml").read_text(encoding="utf-8"))
    jobs = {job["job_name"] for job in scrape["scrape_configs"]}
    assert jobs == {f"bearwatch-{part}" for part in PARTS}


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def infer_process(data_env: dict[str, str], tmp_path: Path) -> Iterator[int]:
    """A real `bearwatch infer` serving /metrics (no model registered: it scores nothing)."""
    port = _free_port()
    env = {**os.environ, **data_env}
    subprocess.run([sys.executable, "-m", "bearwatch", "init"], env=env, check=True, capture_output=True)
    proc = subprocess.Popen(
        [sys.executable, "-m", "bearwatch", "infer", "--metrics-port", str(port)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        yield port
    finally:
        _stop(proc)


def _query(prom_port: int, expr: str) -> list[dict[str, object]]:
    url = f"http://127.0.0.1:{prom_port}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url, timeout=5) as response:
        body = json.load(response)
    assert body["status"] == "success", body
    return list(body["data"]["result"])


@needs_prometheus
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_real_prometheus_scrapes_bearwatch_and_sees_the_frames_waiting(
    factory: sessionmaker[Session], data_env: dict[str, str], infer_process: int, tmp_path: Path
) -> None:
    store_frames_at(factory, FrameStore(Path(data_env["BEARWATCH_DATA_DIR"]) / "frames"), [1.0, 2.0, 3.0])
    prom_port = _free_port()
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(DEPLOY / "bearwatch.rules.yml")],
        "scrape_configs": [{"job_name": "bearwatch-inference", "static_configs": [{"targets": [f"127.0.0.1:{infer_process}"]}]}],
    }
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config), encoding="utf-8")
    prom = subprocess.Popen(
        ["prometheus", f"--config.file={tmp_path / 'prometheus.yml'}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{prom_port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 90
        result: list[dict[str, object]] = []
        while time.monotonic() < deadline:
            try:
                result = _query(prom_port, 'bearwatch_inference_queue_depth{job="bearwatch-inference"}')
            except OSError:
                result = []  # Prometheus still starting
            if result and float(result[0]["value"][1]) == 3:  # type: ignore[index]
                break
            time.sleep(1)
        assert result, "Prometheus never scraped bearwatch_inference_queue_depth from the worker"
        assert float(result[0]["value"][1]) == 3  # type: ignore[index]
        up = _query(prom_port, 'up{job="bearwatch-inference"}')
        assert float(up[0]["value"][1]) == 1  # type: ignore[index]
        # what the absent() rule watches: the worker says which part it is
        info = _query(prom_port, 'bearwatch_process_info{job="bearwatch-inference",part="inference"}')
        assert float(info[0]["value"][1]) == 1  # type: ignore[index]
    finally:
        _stop(prom)
