"""Starting the Streamlit dashboard as a child process of the CLI."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path

import dashboard
from bearwatch.db import make_engine, session_factory
from bearwatch.heartbeat import HeartbeatWriter
from bearwatch.processes import die_with_parent
from bearwatch.settings import Settings


def dashboard_script() -> Path:
    """The page script Streamlit runs for every browser session (AppTest runs it too)."""
    return Path(dashboard.__file__).resolve().parent / "app.py"


def server_script() -> Path:
    """What ``streamlit run`` is given: the ``st.App`` that serves dashboard_script() and
    the session cookie's routes (dashboard.server_app)."""
    return Path(dashboard.__file__).resolve().parent / "server_app.py"


def serve_dashboard(settings: Settings) -> subprocess.Popen[bytes]:
    """Start ``streamlit run`` on the dashboard with this process's settings."""
    env = {
        **os.environ,
        "BEARWATCH_DATABASE_URL": settings.database_url,
        "BEARWATCH_DATA_DIR": str(settings.data_dir.resolve()),
    }
    return subprocess.Popen(
        [
            # Streamlit's command line, once the process serves its /metrics (dashboard.serve)
            sys.executable, "-m", "dashboard.serve", "run", str(server_script()),
            "--server.headless", "true",
            "--server.address", settings.dashboard_address,
            "--server.port", str(settings.dashboard_port),
            "--browser.gatherUsageStats", "false",
            "--server.fileWatcherType", "none",
            "--client.toolbarMode", "minimal",
            # On by default; stated so that nobody turns it off by accident (login form).
            "--server.enableXsrfProtection", "true",
        ],
        env=env,
        preexec_fn=die_with_parent(),
    )


def dashboard_url(settings: Settings) -> str:
    return f"http://{settings.dashboard_address}:{settings.dashboard_port}/"


def stop_dashboard(proc: subprocess.Popen[bytes], timeout_s: float = 10.0) -> int:
    """Ask the Streamlit server to stop; kill it if it has not within ``timeout_s``."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
    return proc.wait()


HEALTH_EVERY_S = 5.0


def _answers(settings: Settings) -> bool:
    """Streamlit's own health endpoint answers "ok"."""
    host = "127.0.0.1" if settings.dashboard_address in ("0.0.0.0", "::", "") else settings.dashboard_address
    try:
        with urllib.request.urlopen(f"http://{host}:{settings.dashboard_port}/_stcore/health", timeout=2) as resp:
            return bool(resp.read() == b"ok")
    except OSError:
        return False


def run_dashboard(settings: Settings) -> int:
    """Serve until the server exits or this process gets SIGTERM/SIGINT, which stops the
    server too (a server left behind would hold the port and the database). Beats like
    every bearwatch process, with progress whenever Streamlit answers its health check,
    so `status` shows the dashboard and the supervisor restarts a hung one."""
    engine = make_engine(settings.database_url)
    beats = HeartbeatWriter(session_factory(engine), "dashboard", every_s=HEALTH_EVERY_S)
    proc = serve_dashboard(settings)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        while not stop.is_set() and proc.poll() is None:
            healthy = _answers(settings)
            beats.beat(progressed=healthy, waiting=0 if healthy else 1)  # unanswered: work waits
            stop.wait(HEALTH_EVERY_S)
        return stop_dashboard(proc) if stop.is_set() else proc.returncode
    finally:
        beats.stopped()
        engine.dispose()
