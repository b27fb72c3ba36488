"""The shadow loop: a small list of named periodic jobs run until SIGTERM.

Jobs: new flags -> alerts, the alert outbox, the outbox depth metric, and the
measurements (:func:`measurement_jobs`): the guard every minute and a stored drift
check per site every hour. More can join through ``extra_jobs``.

Lanes: the jobs run in lanes, each its own thread with its own schedule. The alert lane
(flags -> alerts, delivery, and every job without a ``lane``) runs in the caller's
thread; the measurements beside it, each in its lane: the guard (:data:`MEASUREMENT_LANE`)
and drift (:data:`DRIFT_LANE`, a pass takes minutes at a season's scale), so a long drift
pass holds neither an alert nor the guard's demotions.
The heartbeat is the alert lane's (its rounds are the loop's progress: a drift pass of
ten minutes must not make the supervisor restart the loop); a measurement lane that has
not finished a pass for too long shows in the metrics (``bearwatch_shadow_job_*``: when
each job last succeeded, since when the one in flight runs) and in a log warning.
On stop the loop waits ``LANE_STOP_WAIT_S`` for the other lanes; a pass still in flight
then is abandoned (its thread is a daemon): every job reads outside transactions and
writes in one transaction at its end, so it is stored whole or not at all. On SQLite the
lanes' writes each take the write lock up front (BEGIN IMMEDIATE, bearwatch.db) and wait
for it at most WRITE_LOCK_WAIT_S: no lane holds the lock while waiting for another, so
they cannot deadlock, and every write transaction is short, so neither starves.

Leadership: on PostgreSQL one loop is the leader: it holds a session-level advisory lock
(pg_try_advisory_lock) on a dedicated connection; the others wait and take over when
the leader's connection dies (the server releases the lock). On SQLite there is no
leader election: every job's writes run in BEGIN IMMEDIATE transactions and are
idempotent (processed markers, delivery leases), so a second loop is harmless; it only
shares the work. Only the leader runs any lane; a loop that loses leadership stops
every lane after the job each is running.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import httpx
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from bearwatch.db import error_line, write_transaction
from bearwatch.heartbeat import HeartbeatWriter
from bearwatch.schema import Site, utcnow
from shadow import metrics
from shadow.alerts import process_new_flags
from shadow.camera_hours import roll_camera_hours
from shadow.delivery import DeliveryPolicy, Outbox, http_sender, outbox_depth
from shadow.drift import compute_drifts, store_drift_checks
from shadow.escalation import escalate_held_alerts
from shadow.guard import run_guard_all
from shadow.locks import SHADOW_LEADER_KEY

log = logging.getLogger(__name__)

JobFn = Callable[[sessionmaker[Session], datetime], object]

ALERT_LANE = "alerts"
MEASUREMENT_LANE = "measurements"
DRIFT_LANE = "drift"
HOUSEKEEPING_LANE = "housekeeping"  # the sweeper, retention, embedding thinning: long passes, no alert waits on them
LANE_STOP_WAIT_S = 5.0  # on stop, how long the loop waits for a lane's job in flight
LANE_SLOW_S = 900.0  # a job running longer than this (and than its period) is logged as slow


@dataclass(frozen=True)
class Job:
    name: str
    run: JobFn
    every_s: float = 0.0  # 0: every round
    lane: str = ALERT_LANE  # the thread it runs in (module doc)


def default_jobs(outbox: Outbox) -> list[Job]:
    def depth(factory: sessionmaker[Session], now: datetime) -> int:
        with factory() as session:
            return outbox_depth(session)

    return [
        Job("alerts", lambda factory, now: process_new_flags(factory, now)),
        Job("deliver", outbox.run),  # returns within policy.pass_s; a hung receiver holds only its own threads
        Job("outbox_depth", depth, every_s=5.0),
        Job("escalate", escalate_held_alerts, every_s=15.0),  # held alerts nobody decided in time
    ]


def run_drift_checks(factory: sessionmaker[Session], now: datetime) -> int:
    """A stored drift check for every site; returns the alarms. The reads and the
    statistics run outside any write transaction, in a constant number of statements
    whatever the number of sites (shadow.drift.compute_drifts); then one write
    transaction stores every event in one insert."""
    with factory() as session:
        checks = compute_drifts(session, list(session.scalars(sa.select(Site).order_by(Site.id))), now)
    if not any(check.metrics for check in checks):
        return 0
    with write_transaction(factory) as session:
        return store_drift_checks(session, checks, now)


def measurement_jobs(*, guard_every_s: float = 60.0, drift_every_s: float = 3600.0) -> list[Job]:
    """The guard (demotes a promoted site by itself), the camera-hours rollup before it
    (its exposures read the closed hours kept: shadow.camera_hours) and the drift checks."""
    return [
        Job("drift", lambda factory, now: run_drift_checks(factory, now), every_s=drift_every_s, lane=DRIFT_LANE),
        Job("camera_hours", roll_camera_hours, every_s=guard_every_s, lane=MEASUREMENT_LANE),
        Job("guard", lambda factory, now: run_guard_all(factory, now), every_s=guard_every_s, lane=MEASUREMENT_LANE),
    ]


class Leadership:
    """Whether this loop may run the jobs now (see the module doc)."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        self.conn: sa.Connection | None = None

    def hold(self) -> bool:
        if self.engine.dialect.name != "postgresql":
            return True
        try:
            if self.conn is not None:
                self.conn.exec_driver_sql("SELECT 1")  # still connected: still the leader
                return True
            conn = self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
            got = bool(conn.execute(sa.text("SELECT pg_try_advisory_lock(:k)"), {"k": SHADOW_LEADER_KEY}).scalar())
            if got:
                self.conn = conn
            else:
                conn.close()
            return got
        except sa.exc.DBAPIError as exc:
            log.warning("shadow loop: lost the database connection (%s); trying again", error_line(exc))
            self.release()
            return False

    def release(self) -> None:
        if self.conn is not None:
            try:
                self.conn.invalidate()  # closing the connection frees the advisory lock
                self.conn.close()
            except sa.exc.DBAPIError:
                pass
            self.conn = None


def _close_outbox(outbox: Outbox, factory: sessionmaker[Session], policy: DeliveryPolicy) -> None:
    """Record the answers to requests still in flight (each ends by its deadline), so an
    alert that went out is not sent again after a restart."""
    try:
        outbox.drain(factory, utcnow(), timeout_s=policy.timeout_s + 1.0)
    except Exception:  # stopping anyway; an unrecorded claim expires and is retried
        log.exception("shadow loop: could not record the last alert deliveries; they are retried after their lease")
    outbox.close()


def _run_job(job: Job, factory: sessionmaker[Session]) -> None:
    """Run ``job`` once; a failure is logged (it runs again when next due) and counted."""
    started = time.time()
    metrics.JOB_RUNNING_SINCE.labels(job.name).set(started)
    try:
        job.run(factory, utcnow())
    except sa.exc.OperationalError as exc:  # the database restarting: no traceback
        metrics.JOB_FAILURES.labels(job.name).inc()
        log.warning("shadow loop: job %s: database unavailable (%s); it runs again next round",
                    job.name, error_line(exc))
    except Exception:  # one failing job must not stop the others (logged with its traceback)
        metrics.JOB_FAILURES.labels(job.name).inc()
        log.exception("shadow loop: job %s failed; it runs again next round", job.name)
    else:
        metrics.JOB_LAST_SUCCESS.labels(job.name).set(time.time())
        metrics.JOB_SECONDS.labels(job.name).set(time.time() - started)
    finally:
        metrics.JOB_RUNNING_SINCE.labels(job.name).set(0)


def _run_due_jobs(
    jobs: Sequence[Job], factory: sessionmaker[Session], halt: Callable[[], bool], last_run: dict[str, float],
    running: dict[str, tuple[str, float]] | None = None,
) -> None:
    """One round of a lane: its jobs in order (a job with ``every_s`` only when that much
    time has passed since ``last_run``) until ``halt()``; a failing job is logged.
    ``running``: where the lane says which job it is running since when."""
    for job in jobs:
        if halt():
            break
        if time.monotonic() - last_run.get(job.name, float("-inf")) < job.every_s:
            continue
        last_run[job.name] = time.monotonic()
        if running is not None:
            running[job.lane] = (job.name, time.monotonic())
        try:
            _run_job(job, factory)
        finally:
            if running is not None:
                running.pop(job.lane, None)


class _Lane:
    """A lane beside the alert lane: its jobs on their own schedule in a daemon thread,
    while the loop leads (``leading``) and until ``stop`` or ``ended``."""

    def __init__(self, name: str, jobs: Sequence[Job], factory: sessionmaker[Session], stop: threading.Event,
                 leading: threading.Event, interval_s: float) -> None:
        self.name, self.jobs, self.factory = name, list(jobs), factory
        self.stop, self.leading, self.interval_s = stop, leading, interval_s
        self.ended = threading.Event()  # set by the loop when it ends, whatever ended it
        self.last_run: dict[str, float] = {}
        self.running: dict[str, tuple[str, float]] = {}  # this lane -> (its job in flight, since: monotonic)
        self.warned: tuple[str, float] | None = None
        self.thread = threading.Thread(target=self._run, name=f"shadow-{name}", daemon=True)

    def _halted(self) -> bool:
        return self.stop.is_set() or self.ended.is_set() or not self.leading.is_set()

    def _run(self) -> None:
        while not (self.stop.is_set() or self.ended.is_set()):
            if self.leading.is_set():
                _run_due_jobs(self.jobs, self.factory, self._halted, self.last_run, self.running)
            self.ended.wait(self.interval_s)

    def warn_if_slow(self) -> None:
        """Log, once per run, a job that runs past LANE_SLOW_S and its own period."""
        current = self.running.get(self.name)
        if current is None or current == self.warned:
            return
        job_name, since = current
        every_s = next((j.every_s for j in self.jobs if j.name == job_name), 0.0)
        if time.monotonic() - since > max(LANE_SLOW_S, every_s):
            self.warned = current
            log.warning("shadow loop: lane %s: job %s has run for %.0f s and not finished", self.name, job_name,
                        time.monotonic() - since)

    def end(self) -> None:
        """Stop the lane: wait LANE_STOP_WAIT_S for its job in flight, then abandon it."""
        self.ended.set()
        self.thread.join(LANE_STOP_WAIT_S)
        current = self.running.get(self.name)
        if self.thread.is_alive() and current is not None:
            log.warning("shadow loop: lane %s: job %s still running at stop; abandoned (it stores all or nothing)",
                        self.name, current[0])


def _lanes_of(jobs: Sequence[Job]) -> dict[str, list[Job]]:
    lanes: dict[str, list[Job]] = {ALERT_LANE: []}
    for job in jobs:
        lanes.setdefault(job.lane, []).append(job)
    return lanes


def _jobs_line(lanes: dict[str, list[Job]], interval_s: float) -> str:
    line = f"shadow loop: jobs {', '.join(j.name for j in lanes[ALERT_LANE])}, every {interval_s:g}s"
    others = [f"{name} lane: {', '.join(j.name for j in jobs)}" for name, jobs in lanes.items() if name != ALERT_LANE]
    return "; ".join([line, *others])


def run_shadow_loop(
    factory: sessionmaker[Session], stop: threading.Event, *, interval_s: float = 1.0, extra_jobs: Sequence[Job] = (),
    echo: Callable[[str], None] = print, policy: DeliveryPolicy = DeliveryPolicy(),
    heartbeat: HeartbeatWriter | None = None, frames_dir: Path | None = None,
) -> None:
    """Run each lane's jobs in order each round (a job with ``every_s`` only when that much
    time has passed) until ``stop`` is set; a failing job is logged and tried next round.
    The alert lane runs here, the other lanes in their threads (module doc).
    ``frames_dir``: the frame store, for e-mail alerts to attach their frame."""
    engine = factory.kw["bind"]
    leadership = Leadership(engine)
    last_run: dict[str, float] = {}
    leading: bool | None = None
    now_leading = threading.Event()  # the other lanes run while it is set
    with httpx.Client(timeout=policy.timeout_s) as client:
        outbox = Outbox(http_sender(client, policy.timeout_s, frames_dir=frames_dir), policy)
        lanes = _lanes_of([*default_jobs(outbox), *extra_jobs])
        echo(_jobs_line(lanes, interval_s))
        others = [_Lane(name, jobs, factory, stop, now_leading, interval_s) for name, jobs in lanes.items() if name != ALERT_LANE]
        for lane in others:
            lane.thread.start()
        try:
            while not stop.is_set():
                held = leadership.hold()
                if held != leading:
                    echo("shadow loop: leader" if held else "shadow loop: waiting, another shadow loop is the leader")
                    leading = held
                (now_leading.set if held else now_leading.clear)()
                if held:
                    _run_due_jobs(lanes[ALERT_LANE], factory, stop.is_set, last_run)
                for lane in others:
                    lane.warn_if_slow()
                if heartbeat is not None:  # a finished round of the alert lane is progress, leader or not
                    heartbeat.beat(progressed=True)
                stop.wait(interval_s)
        finally:
            now_leading.clear()
            for lane in others:  # they end too, whatever ended this one
                lane.ended.set()
            _close_outbox(outbox, factory, policy)
            for lane in others:
                lane.end()
            leadership.release()
            if heartbeat is not None:
                heartbeat.stopped()
    echo("shadow loop: stopped")
