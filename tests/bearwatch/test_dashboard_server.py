"""`bearwatch dashboard` as a real process: SIGTERM stops its Streamlit server too."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from tests.conftest import run_cli


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _health(url: str) -> str:
    with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as resp:
        return resp.read().decode()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_sigterm_stops_the_streamlit_server_too(data_env: dict[str, str]) -> None:
    assert run_cli("init", env=data_env).returncode == 0
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen([sys.executable, "-m", "bearwatch", "dashboard"],
                            env={**os.environ, **data_env, "BEARWATCH_DASHBOARD_PORT": str(port)},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if _health(url) == "ok":
                    break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, "the dashboard did not start"
                time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    with pytest.raises(OSError):  # nothing left behind on the port
        _health(url)
