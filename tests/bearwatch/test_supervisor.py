"""The supervisor of `bearwatch run`, driving real child processes."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from bearwatch.supervisor import ChildSpec, ChildStatus, RestartPolicy, Supervisor

# A child that records its start and its SIGTERM, then idles (or ignores SIGTERM).
IDLER = """
import signal, sys, time, os
log = sys.argv[1]
open(log, 'a').write(f'start {os.getpid()}\\n')
def term(*_):
    open(log, 'a').write(f'term {time.monotonic()}\\n')
    if sys.argv[2] == 'obey':
        sys.exit(0)
signal.signal(signal.SIGTERM, term)
while True:
    time.sleep(0.05)
"""
FAST = RestartPolicy(max_restarts=3, window_s=60, backoff_initial_s=0.05, backoff_max_s=0.2, stop_grace_s=2)


def _idler(name: str, log: Path, mode: str = "obey") -> ChildSpec:
    return ChildSpec(name, [sys.executable, "-c", IDLER, str(log), mode])


def _poll_until(sup: Supervisor, done: Callable[[], bool], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sup.poll_once()
        if done():
            return
        time.sleep(0.05)
    raise AssertionError(f"not reached in {timeout}s: {sup.states()}")


def _starts(log: Path) -> int:
    return log.read_text().count("start") if log.exists() else 0


def test_a_crashing_child_is_restarted_until_its_budget_is_spent_then_failed_and_reported(tmp_path: Path) -> None:
    failures: list[tuple[str, str]] = []
    crasher = ChildSpec("inference", [sys.executable, "-c", "import sys; sys.exit(3)"])
    steady_log = tmp_path / "steady.log"
    sup = Supervisor([crasher, _idler("ingest", steady_log)], FAST, on_failed=lambda n, _pid, why: failures.append((n, why)))
    sup.start()
    try:
        _poll_until(sup, lambda: sup.states()[0].status is ChildStatus.FAILED)
        for _ in range(10):  # a failed child stays failed
            sup.poll_once()
            time.sleep(0.05)
        inference, ingest = sup.states()
        assert inference.status is ChildStatus.FAILED and inference.restarts_in_window == 3
        assert "exited with code 3" in inference.last_exit
        assert failures and failures[0][0] == "inference" and "budget" in failures[0][1]
        assert len(failures) == 1
        # the healthy child never noticed
        assert ingest.status is ChildStatus.RUNNING and _starts(steady_log) == 1
    finally:
        sup.shutdown()


def test_a_killed_child_comes_back(tmp_path: Path) -> None:
    log = tmp_path / "worker.log"
    sup = Supervisor([_idler("shadow", log)], FAST)
    sup.start()
    try:
        _poll_until(sup, lambda: _starts(log) == 1)
        first = sup.states()[0].pid
        assert first is not None
        import os
        import signal

        os.kill(first, signal.SIGKILL)
        _poll_until(sup, lambda: _starts(log) == 2 and sup.states()[0].status is ChildStatus.RUNNING)
        assert sup.states()[0].pid not in (None, first)
        assert "killed by signal 9" in sup.states()[0].last_exit
    finally:
        sup.shutdown()


def test_a_stuck_child_is_restarted_and_an_idle_one_is_left_alone(tmp_path: Path) -> None:
    stuck_log, idle_log = tmp_path / "stuck.log", tmp_path / "idle.log"
    stuck_pids: set[int] = set()

    def probe(name: str, pid: int, age_s: float) -> bool:  # what the heartbeat rows would say
        if name == "inference" and not stuck_pids and _starts(stuck_log) == 1:
            stuck_pids.add(pid)
        return pid in stuck_pids

    sup = Supervisor([_idler("inference", stuck_log), _idler("ingest", idle_log)], FAST, stuck=probe)
    sup.start()
    try:
        _poll_until(sup, lambda: _starts(stuck_log) == 2)
        assert "stuck" in sup.states()[0].last_exit
        assert "term" in stuck_log.read_text()  # asked to stop first
        assert _starts(idle_log) == 1 and sup.states()[1].status is ChildStatus.RUNNING
    finally:
        sup.shutdown()


def test_shutdown_stops_children_in_reverse_start_order_and_kills_one_that_ignores_sigterm(tmp_path: Path) -> None:
    logs = [tmp_path / f"{n}.log" for n in ("shadow", "inference", "ingest")]
    specs = [_idler("shadow", logs[0]), _idler("inference", logs[1], mode="ignore"), _idler("ingest", logs[2])]
    sup = Supervisor(specs, RestartPolicy(stop_grace_s=1.0))
    stop = threading.Event()
    runner = threading.Thread(target=sup.run, args=(stop,))
    runner.start()
    deadline = time.monotonic() + 20
    while not all(_starts(log) for log in logs) and time.monotonic() < deadline:
        time.sleep(0.05)
    stop.set()
    runner.join(timeout=30)
    assert not runner.is_alive()
    term_times = [float(log.read_text().split("term ")[1].split()[0]) for log in logs]
    assert term_times[2] < term_times[1] < term_times[0]  # ingest, then inference, then shadow
    # inference ignored SIGTERM: it was killed after the grace period, and shadow waited for that
    assert term_times[0] - term_times[1] >= 0.9
    assert all(state.status is ChildStatus.STOPPED and state.pid is None for state in sup.states())


def test_a_child_silent_past_its_start_up_deadline_is_restarted(tmp_path: Path) -> None:
    # A worker frozen while loading its model never writes a first heartbeat; the probe
    # (bearwatch.heartbeat.heartbeat_probe) then answers from the child's age alone.
    log = tmp_path / "starting.log"
    sup = Supervisor([_idler("inference", log)], FAST, stuck=lambda _name, _pid, age_s: age_s > 1.0)
    sup.start()
    try:
        _poll_until(sup, lambda: _starts(log) == 2)
        assert "stuck" in sup.states()[0].last_exit
    finally:
        sup.shutdown()
