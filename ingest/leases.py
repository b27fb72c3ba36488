"""Sharing cameras between ingest workers: camera leases, and the SQLite one-worker lock.

With PostgreSQL several `bearwatch ingest` processes (on one machine or several) each
claim cameras with ``FOR UPDATE SKIP LOCKED`` and keep them by renewing
``cameras.lease_until`` (a heartbeat every third of the lease). A worker that dies stops
renewing; its cameras are free again when the lease ends and another worker claims them.
A frame row is only committed while its worker still holds the lease (ingest.sampler),
so a camera is sampled by one worker at a time even across a takeover.

With SQLite there is one writer per database: a second ingest process is refused by an
exclusive lock on a file next to the database.
"""

from __future__ import annotations

import fcntl
import math
import os
import secrets
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from bearwatch.errors import BearwatchError
from bearwatch.schema import Camera, CameraHealth
from ingest.health import set_health
from ingest.sampler import CameraSpec


class IngestAlreadyRunning(BearwatchError):
    """A second ingest process on one SQLite database."""


def new_worker_id() -> str:
    return f"{socket.gethostname()[:60]}:{os.getpid()}:{secrets.token_hex(3)}"


class WorkerPresence:
    """PostgreSQL: every live ingest worker holds a session advisory lock on a connection
    of its own for as long as it runs (a killed worker's lock goes with its connection);
    counting those locks counts the live workers, so the cameras can be shared fairly.
    Elsewhere (SQLite: one worker) ``count`` is None."""

    LOCK_CLASS = 0x6277  # "bw": bearwatch ingest workers

    def __init__(self, engine: sa.Engine) -> None:
        self._engine = engine
        self._conn: sa.Connection | None = None
        self._key = secrets.randbits(31)
        self._postgres = engine.dialect.name == "postgresql"
        if self._postgres:
            self._hold()

    def _hold(self) -> None:
        conn = self._engine.connect()
        try:
            conn.execute(sa.text("SELECT pg_advisory_lock(:c, :k)"), {"c": self.LOCK_CLASS, "k": self._key})
            conn.commit()
        except BaseException:
            conn.close()
            raise
        self._conn = conn

    def _still_held(self) -> None:
        """After a database restart the lock went with its connection: take it again
        (while the database is still down this raises; the next beat tries again)."""
        if self._conn is not None:
            try:
                self._conn.execute(sa.text("SELECT 1"))
                self._conn.commit()
                return
            except sa.exc.DBAPIError:
                try:
                    self._conn.invalidate()
                    self._conn.close()
                except sa.exc.DBAPIError:
                    pass
                self._conn = None
        self._hold()

    def count(self) -> int | None:
        if not self._postgres:
            return None
        self._still_held()
        with self._engine.connect() as conn:
            return int(conn.scalar(sa.text(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND classid = :c AND granted "
                "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
            ), {"c": self.LOCK_CLASS}) or 0)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def claim_cameras(
    session: Session, owner: str, *, lease_s: float, now: datetime, workers: int | None = None
) -> list[CameraSpec]:
    """Renew this worker's leases, claim free cameras up to a fair share (enabled cameras
    / live ``workers``; when that is unknown, / workers holding leases), give back cameras
    above the share, and return the cameras this worker samples now. Disabled cameras are
    released and marked disabled."""
    until = now + timedelta(seconds=lease_s)
    for camera in session.scalars(
        sa.select(Camera).where(Camera.enabled.is_(False), Camera.health != CameraHealth.DISABLED).with_for_update(skip_locked=True)
    ):
        set_health(session, camera, CameraHealth.DISABLED, "disabled by an admin", now)
    session.execute(
        sa.update(Camera).where(Camera.lease_owner == owner, Camera.enabled.is_(False)).values(lease_owner=None, lease_until=None)
    )
    session.execute(sa.update(Camera).where(Camera.lease_owner == owner).values(lease_until=until))
    enabled = session.scalar(sa.select(sa.func.count()).select_from(Camera).where(Camera.enabled)) or 0
    others = session.scalar(
        sa.select(sa.func.count(sa.distinct(Camera.lease_owner))).where(Camera.lease_until > now, Camera.lease_owner != owner)
    ) or 0
    mine = session.scalar(sa.select(sa.func.count()).select_from(Camera).where(Camera.lease_owner == owner)) or 0
    share = math.ceil(enabled / max(workers or 0, others + 1, 1))
    wanted = share - mine
    if wanted < 0:  # another worker joined: hand over the surplus, it claims them at its next beat
        surplus = session.scalars(
            sa.select(Camera.id).where(Camera.lease_owner == owner).order_by(Camera.id.desc()).limit(-wanted)
        ).all()
        session.execute(sa.update(Camera).where(Camera.id.in_(surplus)).values(lease_owner=None, lease_until=None))
    if wanted > 0:
        free = session.scalars(
            sa.select(Camera.id)
            .where(Camera.enabled, sa.or_(Camera.lease_owner.is_(None), Camera.lease_until.is_(None), Camera.lease_until <= now))
            .order_by(Camera.id).limit(wanted).with_for_update(skip_locked=True)
        ).all()
        if free:
            session.execute(sa.update(Camera).where(Camera.id.in_(free)).values(lease_owner=owner, lease_until=until))
    rows = session.execute(
        sa.select(Camera.id, Camera.site_id, Camera.source, Camera.interval_s)
        .where(Camera.lease_owner == owner).order_by(Camera.id)
    ).all()
    return [CameraSpec(*row) for row in rows]


def release_cameras(session: Session, owner: str) -> int:
    result = session.execute(
        sa.update(Camera).where(Camera.lease_owner == owner).values(lease_owner=None, lease_until=None)
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]  # an UPDATE's Result is a CursorResult


@contextmanager
def single_ingest_lock(database_url: str) -> Iterator[None]:
    """On SQLite, hold an exclusive lock on ``<database>.ingest.lock`` for the life of
    the ingest process; a second one is refused with a clear message. No-op elsewhere."""
    url = make_url(database_url)
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        yield
        return
    path = Path(url.database + ".ingest.lock")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 100, 0).decode(errors="replace").strip() or "unknown"
            raise IngestAlreadyRunning(
                f"another ingest process ({holder}) is already sampling the SQLite database {url.database}; "
                "SQLite allows one ingest process: stop it first, or use PostgreSQL to run several workers"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}".encode(), 0)
        yield
    finally:
        os.close(fd)  # closing drops the lock
