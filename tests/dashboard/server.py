"""A real `bearwatch dashboard` process on a loopback port, for the browser and the raw
websocket client tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager

from tests.ingest.helpers import free_port


@contextmanager
def running_dashboard(env: dict[str, str]) -> Iterator[str]:
    """Start the dashboard with ``env`` added to ours; yield its base URL once healthy."""
    port = free_port()
    env = {**os.environ, **env, "BEARWATCH_DASHBOARD_PORT": str(port)}
    proc = subprocess.Popen([sys.executable, "-m", "bearwatch", "dashboard"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as resp:
                    if resp.read() == b"ok":
                        break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"dashboard did not start: {proc.stdout.read() if proc.stdout else ''}") from None
                time.sleep(0.2)
        yield url
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
