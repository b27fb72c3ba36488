"""Heartbeats: every long-running bearwatch process says, in the database, that it is
alive, when it last finished a unit of work and how much work it sees waiting.

The supervisor of `bearwatch run` restarts a child that is alive but stuck (work
waits, no progress); `bearwatch status` shows every process of a deployment, on
every machine, from the same rows.
"""

from __future__ import annotations

import enum
import logging
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from bearwatch.db import error_line, write_transaction
from bearwatch.schema import Heartbeat, ProcessState, utcnow

log = logging.getLogger(__name__)

BEAT_EVERY_S = 5.0
STALE_AFTER_S = 30.0  # no beat for this long: the process is gone or frozen
STUCK_AFTER_S = 120.0  # work waiting and no progress for this long: stuck


class HeartbeatWriter:
    """This process's row. ``beat`` is cheap to call in every loop turn: it writes at
    most every ``every_s`` seconds (a first beat and progress after idling at once)."""

    def __init__(
        self, factory: sessionmaker[Session], part: str, *, every_s: float = BEAT_EVERY_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.factory, self.part, self.every_s, self.clock = factory, part, every_s, clock
        self.host, self.pid = socket.gethostname(), os.getpid()
        self._written_at: float | None = None
        self._progress_at = utcnow()
        self._waiting = 0

    def beat(self, *, progressed: bool = False, waiting: int | None = None, force: bool = False) -> None:
        if progressed:
            self._progress_at = utcnow()
        if waiting is not None:
            self._waiting = waiting
        due = self._written_at is None or self.clock() - self._written_at >= self.every_s
        if not (due or force):
            return
        try:
            self._write(ProcessState.RUNNING)
        except sa.exc.OperationalError as exc:  # database restarting: beat again next turn
            log.warning("heartbeat of %s not written: %s", self.part, error_line(exc))

    def stopped(self) -> None:
        try:
            self._write(ProcessState.STOPPED)
        except sa.exc.OperationalError:
            pass

    def _write(self, state: ProcessState) -> None:
        now = utcnow()
        with write_transaction(self.factory) as session:  # BEGIN IMMEDIATE on SQLite: no upgrade deadlock
            row = session.scalar(
                sa.select(Heartbeat).where(Heartbeat.part == self.part, Heartbeat.host == self.host, Heartbeat.pid == self.pid)
            )
            if row is None:
                row = Heartbeat(part=self.part, host=self.host, pid=self.pid, started_at=now)
                session.add(row)
            row.state, row.beat_at, row.progress_at, row.waiting = state, now, self._progress_at, self._waiting
        self._written_at = self.clock()


class Health(str, enum.Enum):
    OK = "ok"
    IDLE = "idle"  # alive, nothing to do
    STUCK = "stuck"  # alive, work waiting, no progress
    STALE = "stale"  # no heartbeat for a while: dead or frozen
    STOPPED = "stopped"
    FAILED = "failed"


@dataclass(frozen=True)
class ProcessHealth:
    part: str
    host: str
    pid: int
    health: Health
    beat_age_s: float
    progress_age_s: float
    waiting: int
    detail: str | None


def judge(
    state: ProcessState, beat_age_s: float, progress_age_s: float, waiting: int, *,
    stale_after_s: float = STALE_AFTER_S, stuck_after_s: float = STUCK_AFTER_S,
) -> Health:
    """A process's health from its last heartbeat (pure)."""
    if state is ProcessState.FAILED:
        return Health.FAILED
    if state is ProcessState.STOPPED:
        return Health.STOPPED
    if beat_age_s > stale_after_s:
        return Health.STALE
    if waiting > 0 and progress_age_s > stuck_after_s:
        return Health.STUCK
    return Health.OK if waiting > 0 or progress_age_s <= stuck_after_s else Health.IDLE


def process_health(session: Session, now: datetime, *, forget_after: timedelta = timedelta(days=1)) -> list[ProcessHealth]:
    """Every process seen in the last day, newest first per part."""
    rows = session.scalars(
        sa.select(Heartbeat).where(Heartbeat.beat_at >= now - forget_after).order_by(Heartbeat.part, Heartbeat.beat_at.desc())
    ).all()
    out = []
    for row in rows:
        beat_age = (now - row.beat_at).total_seconds()
        progress_age = (now - row.progress_at).total_seconds()
        out.append(ProcessHealth(row.part, row.host, row.pid, judge(row.state, beat_age, progress_age, row.waiting),
                                 beat_age, progress_age, row.waiting, row.detail))
    return out


def heartbeat_probe(
    factory: sessionmaker[Session], host: str, *, stuck_after_s: float, startup_deadline_s: float,
    clock: Callable[[], float] = time.monotonic,
) -> Callable[[str, int, float], bool]:
    """The supervisor's question "is this child (part, pid, seconds since started) alive
    but stuck?", answered from its heartbeat row: work waiting and no progress, no beat
    for ``stuck_after_s`` (frozen: SIGSTOP, a hung call), or no first beat within
    ``startup_deadline_s`` of its start (hung while loading). While the database is
    unreachable, and for ``stuck_after_s`` after, nobody is judged: heartbeats could not
    be written."""
    db_failed_at = float("-inf")

    def stuck(part: str, pid: int, age_s: float) -> bool:
        nonlocal db_failed_at
        if clock() - db_failed_at < stuck_after_s:
            return False
        try:
            with factory() as session:
                row = session.scalar(
                    sa.select(Heartbeat).where(Heartbeat.part == part, Heartbeat.host == host, Heartbeat.pid == pid)
                )
        except sa.exc.OperationalError:
            db_failed_at = clock()
            return False
        if row is None:
            return age_s > startup_deadline_s
        now = utcnow()
        health = judge(row.state, (now - row.beat_at).total_seconds(), (now - row.progress_at).total_seconds(),
                       row.waiting, stale_after_s=stuck_after_s, stuck_after_s=stuck_after_s)
        return health in (Health.STUCK, Health.STALE)

    return stuck


def mark_failed(session: Session, part: str, host: str, pid: int, detail: str) -> None:
    """The supervisor's verdict on a child it gave up on."""
    row = session.scalar(sa.select(Heartbeat).where(Heartbeat.part == part, Heartbeat.host == host, Heartbeat.pid == pid))
    if row is None:
        row = Heartbeat(part=part, host=host, pid=pid)
        session.add(row)
    row.state, row.detail, row.beat_at = ProcessState.FAILED, detail[:1000], utcnow()
