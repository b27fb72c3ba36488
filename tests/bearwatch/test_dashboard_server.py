"""`bearwatch dashboard` as a real process: SIGTERM stops its Streamlit server too."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request

import pytest
import sqlalchemy as sa

from bearwatch.db import make_engine
from bearwatch.schema import Heartbeat, ProcessState
from tests.conftest import run_cli, wait_for
from tests.ingest.helpers import free_port


def _health(url: str) -> str:
    with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as resp:
        return resp.read().decode()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_sigterm_stops_the_streamlit_server_too(data_env: dict[str, str]) -> None:
    assert run_cli("init", env=data_env).returncode == 0
    port = free_port()
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
        wait_for("the dashboard's heartbeat, with progress", lambda: _dashboard_beat(data_env, proc.pid) is not None, 30)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    with pytest.raises(OSError):  # nothing left behind on the port
        _health(url)
    assert _dashboard_beat(data_env, proc.pid) is ProcessState.STOPPED, "`status` shows it stopped"


def _dashboard_beat(data_env: dict[str, str], pid: int) -> ProcessState | None:
    engine = make_engine(data_env["BEARWATCH_DATABASE_URL"])
    try:
        with engine.connect() as conn:
            row = conn.execute(sa.select(Heartbeat.state, Heartbeat.waiting).where(
                Heartbeat.part == "dashboard", Heartbeat.pid == pid)).first()
    finally:
        engine.dispose()
    return None if row is None or row.waiting else ProcessState(row.state)


def _children(pid: int) -> list[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return [int(p) for p in f.read().split()]


def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] == "Z"  # a zombie waits only for its reaper
    except FileNotFoundError:
        return True


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_sigkilled_dashboard_takes_its_streamlit_server_along_and_restarts_on_its_port(
    data_env: dict[str, str]
) -> None:
    assert run_cli("init", env=data_env).returncode == 0
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, **data_env, "BEARWATCH_DASHBOARD_PORT": str(port)}
    procs = [subprocess.Popen([sys.executable, "-m", "bearwatch", "dashboard"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    try:
        wait_for("the dashboard to answer", lambda: _healthy(url), 60)
        (streamlit,) = _children(procs[0].pid)
        procs[0].send_signal(signal.SIGKILL)  # no chance to stop its child
        procs[0].wait()
        wait_for("the orphaned Streamlit server to die with its parent", lambda: _gone(streamlit), 30)
        procs.append(subprocess.Popen([sys.executable, "-m", "bearwatch", "dashboard"], env=env,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True))
        wait_for("the restarted dashboard to answer on the same port", lambda: _healthy(url), 60)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
                proc.wait(timeout=30)


def _healthy(url: str) -> bool:
    try:
        return _health(url) == "ok"
    except OSError:
        return False


SUPERVISOR = """
import sys, threading
from bearwatch.supervisor import ChildSpec, Supervisor
sup = Supervisor([ChildSpec("sleeper", [sys.executable, "-c", "import time; time.sleep(600)"])])
sup.start()
print(sup.states()[0].pid, flush=True)
threading.Event().wait()
"""


def test_children_of_a_sigkilled_supervisor_die_with_it() -> None:
    # `bearwatch run` SIGKILLed (OOM killer, kill -9): its workers must not run on unsupervised.
    parent = subprocess.Popen([sys.executable, "-c", SUPERVISOR], stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    assert not _gone(child)
    parent.kill()
    parent.wait()
    wait_for("the supervised child to die with its supervisor", lambda: _gone(child), 30)
