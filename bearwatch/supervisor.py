"""Supervision of bearwatch's child processes for `bearwatch run`.

Each part (shadow loop, inference worker, ingest, dashboard) runs as its own child
process. A child that dies is restarted after a backoff, within a restart budget
(too many restarts in a window: the child is marked failed and reported, not
restarted forever). A child that is alive but stuck, as its heartbeat tells (work
waiting, no progress), is killed and restarted too. Shutdown goes in order: the
children are stopped one by one in reverse start order (ingest stops taking frames
before the worker that scores them), each with SIGTERM and a grace period, then SIGKILL.
"""

from __future__ import annotations

import enum
import logging
import os
import signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from bearwatch.processes import die_with_parent

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ChildSpec:
    name: str  # the part: "shadow", "inference", "ingest", "dashboard"
    argv: Sequence[str]
    env: dict[str, str] | None = None  # None: inherit
    check_stuck: bool = True


@dataclass(frozen=True)
class RestartPolicy:
    max_restarts: int = 5  # within window_s; one more death and the child is failed
    window_s: float = 600.0
    backoff_initial_s: float = 1.0
    backoff_max_s: float = 30.0
    stop_grace_s: float = 30.0  # SIGTERM, then SIGKILL after this


class ChildStatus(str, enum.Enum):
    RUNNING = "running"
    WAITING = "waiting"  # died; restarts after its backoff
    FAILED = "failed"  # restart budget spent
    STOPPED = "stopped"


# (child name, pid, seconds since it was started) -> True when the child is alive but
# stuck (from its heartbeat; before its first one, from how long it has been starting).
StuckProbe = Callable[[str, int, float], bool]
# Called once when a child is given up on: (name, pid, reason).
FailureReport = Callable[[str, int, str], None]


@dataclass
class _Child:
    spec: ChildSpec
    proc: subprocess.Popen[bytes] | None = None
    status: ChildStatus = ChildStatus.STOPPED
    restarts: deque[float] = field(default_factory=deque)
    restart_at: float = 0.0
    started_at: float = 0.0
    last_exit: str = ""


@dataclass(frozen=True)
class ChildState:
    name: str
    status: ChildStatus
    pid: int | None
    restarts_in_window: int
    last_exit: str


class Supervisor:
    def __init__(
        self, specs: Sequence[ChildSpec], policy: RestartPolicy = RestartPolicy(), *,
        stuck: StuckProbe | None = None, on_failed: FailureReport | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.policy, self.stuck, self.on_failed, self.clock = policy, stuck, on_failed, clock
        self._children = [_Child(spec) for spec in specs]
        self._lock = threading.Lock()

    # -- lifecycle ---------------------------------------------------------------
    def start(self) -> None:
        for child in self._children:
            self._spawn(child)

    def run(
        self, stop: threading.Event, poll_s: float = 0.5, *, before_shutdown: Callable[[Supervisor], None] | None = None,
    ) -> None:
        """Supervise until ``stop`` is set, then shut down in order (``before_shutdown``
        first, e.g. to stop ingest alone and let the queue drain)."""
        self.start()
        try:
            while not stop.is_set():
                self.poll_once()
                stop.wait(poll_s)
            if before_shutdown is not None:
                before_shutdown(self)
        finally:
            self.shutdown()

    def stop_child(self, name: str) -> None:
        """Stop one child for good (SIGTERM, then SIGKILL after the grace period)."""
        with self._lock:
            for child in self._children:
                if child.spec.name == name:
                    self._stop(child)

    def poll_once(self) -> None:
        now = self.clock()
        with self._lock:
            for child in self._children:
                if child.status is ChildStatus.RUNNING:
                    self._check_running(child, now)
                elif child.status is ChildStatus.WAITING and now >= child.restart_at:
                    self._spawn(child)

    def shutdown(self) -> None:
        with self._lock:
            for child in reversed(self._children):
                self._stop(child)

    def states(self) -> list[ChildState]:
        with self._lock:
            return [
                ChildState(c.spec.name, c.status, c.proc.pid if c.proc and c.proc.poll() is None else None,
                           len(c.restarts), c.last_exit)
                for c in self._children
            ]

    # -- internals ---------------------------------------------------------------
    def _spawn(self, child: _Child) -> None:
        env = None if child.spec.env is None else {**os.environ, **child.spec.env}
        child.proc = subprocess.Popen(list(child.spec.argv), env=env, preexec_fn=die_with_parent())
        child.status, child.started_at = ChildStatus.RUNNING, self.clock()
        log.info("started %s (pid %d)", child.spec.name, child.proc.pid)

    def _check_running(self, child: _Child, now: float) -> None:
        assert child.proc is not None
        code = child.proc.poll()
        if code is not None:
            self._died(child, now, f"exited with code {code}" if code >= 0 else f"killed by signal {-code}")
        elif child.spec.check_stuck and self.stuck is not None and self.stuck(
            child.spec.name, child.proc.pid, now - child.started_at
        ):
            log.error("%s (pid %d) is stuck (no progress while work waits, or no heartbeat); restarting it",
                      child.spec.name, child.proc.pid)
            self._terminate(child.proc, grace_s=min(5.0, self.policy.stop_grace_s))
            self._died(child, now, "stuck: killed and restarted")

    def _died(self, child: _Child, now: float, why: str) -> None:
        assert child.proc is not None
        child.last_exit = why
        while child.restarts and now - child.restarts[0] > self.policy.window_s:
            child.restarts.popleft()
        if len(child.restarts) >= self.policy.max_restarts:
            child.status = ChildStatus.FAILED
            reason = (f"{why}; {len(child.restarts)} restarts in {self.policy.window_s:g}s spent the budget: "
                      "not restarting it")
            log.error("%s %s", child.spec.name, reason)
            if self.on_failed is not None:
                self.on_failed(child.spec.name, child.proc.pid, reason)
            return
        backoff = min(self.policy.backoff_max_s, self.policy.backoff_initial_s * 2 ** len(child.restarts))
        child.restarts.append(now)
        child.restart_at = now + backoff
        child.status = ChildStatus.WAITING
        log.warning("%s (pid %d) %s; restarting in %.1fs", child.spec.name, child.proc.pid, why, backoff)

    def _stop(self, child: _Child) -> None:
        if child.proc is not None and child.proc.poll() is None:
            log.info("stopping %s (pid %d)", child.spec.name, child.proc.pid)
            self._terminate(child.proc, grace_s=self.policy.stop_grace_s)
        if child.status is not ChildStatus.FAILED:
            child.status = ChildStatus.STOPPED

    @staticmethod
    def _terminate(proc: subprocess.Popen[bytes], grace_s: float) -> None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
