"""The shadow loop: a small list of named periodic jobs run until SIGTERM.

Jobs: new flags -> alerts, the alert outbox, the outbox depth metric, and the
measurements (:func:`measurement_jobs`): the guard every minute and a stored drift
check per site every hour. More can join through ``extra_jobs``.

Leadership: on PostgreSQL one loop is the leader: it holds a session-level advisory lock
(pg_try_advisory_lock) on a dedicated connection; the others wait and take over when
the leader's connection dies (the server releases the lock). On SQLite there is no
leader election: every job's writes run in BEGIN IMMEDIATE transactions and are
idempotent (processed markers, delivery leases), so a second loop is harmless; it only
shares the work.
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

from bearwatch.db import write_transaction
from bearwatch.heartbeat import HeartbeatWriter
from bearwatch.schema import Site, utcnow
from shadow.alerts import process_new_flags
from shadow.delivery import DeliveryPolicy, Outbox, http_sender, outbox_depth
from shadow.drift import compute_drifts, store_drift_checks
from shadow.escalation import escalate_held_alerts
from shadow.guard import run_guard_all
from shadow.locks import SHADOW_LEADER_KEY

log = logging.getLogger(__name__)

JobFn = Callable[[sessionmaker[Session], datetime], object]


@dataclass(frozen=True)
class Job:
    name: str
    run: JobFn
    every_s: float = 0.0  # 0: every round


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
    """The guard (demotes a promoted site by itself) and the drift checks it reads."""
    return [
        Job("drift", run_drift_checks, every_s=drift_every_s),
        Job("guard", lambda factory, now: run_guard_all(factory, now), every_s=guard_every_s),
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
            log.warning("shadow loop: lost the database connection (%s); trying again", str(exc.orig or exc).splitlines()[0])
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


def _run_due_jobs(
    jobs: Sequence[Job], factory: sessionmaker[Session], stop: threading.Event, last_run: dict[str, float],
) -> None:
    """One round of the leader: the jobs in order (a job with ``every_s`` only when that
    much time has passed since ``last_run``) until ``stop`` is set; a failing job is logged."""
    for job in jobs:
        if stop.is_set():
            break
        if time.monotonic() - last_run.get(job.name, float("-inf")) < job.every_s:
            continue
        last_run[job.name] = time.monotonic()
        try:
            job.run(factory, utcnow())
        except sa.exc.OperationalError as exc:  # the database restarting: no traceback
            log.warning("shadow loop: job %s: database unavailable (%s); it runs again next round",
                        job.name, str(exc.orig or exc).strip().splitlines()[0])
        except Exception:  # one failing job must not stop the others (logged with its traceback)
            log.exception("shadow loop: job %s failed; it runs again next round", job.name)


def run_shadow_loop(
    factory: sessionmaker[Session], stop: threading.Event, *, interval_s: float = 1.0, extra_jobs: Sequence[Job] = (),
    echo: Callable[[str], None] = print, policy: DeliveryPolicy = DeliveryPolicy(),
    heartbeat: HeartbeatWriter | None = None, frames_dir: Path | None = None,
) -> None:
    """Run the jobs in order each round (a job with ``every_s`` only when that much time
    has passed) until ``stop`` is set; a failing job is logged and tried next round.
    ``frames_dir``: the frame store, for e-mail alerts to attach their frame."""
    engine = factory.kw["bind"]
    leadership = Leadership(engine)
    last_run: dict[str, float] = {}
    leading: bool | None = None
    with httpx.Client(timeout=policy.timeout_s) as client:
        outbox = Outbox(http_sender(client, policy.timeout_s, frames_dir=frames_dir), policy)
        job_list = [*default_jobs(outbox), *extra_jobs]
        echo(f"shadow loop: jobs {', '.join(j.name for j in job_list)}, every {interval_s:g}s")
        try:
            while not stop.is_set():
                now_leading = leadership.hold()
                if now_leading != leading:
                    echo("shadow loop: leader" if now_leading else "shadow loop: waiting, another shadow loop is the leader")
                    leading = now_leading
                if now_leading:
                    _run_due_jobs(job_list, factory, stop, last_run)
                if heartbeat is not None:  # a finished round is progress, leader or not
                    heartbeat.beat(progressed=True)
                stop.wait(interval_s)
        finally:
            _close_outbox(outbox, factory, policy)
            leadership.release()
            if heartbeat is not None:
                heartbeat.stopped()
    echo("shadow loop: stopped")
