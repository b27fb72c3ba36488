"""Engines and sessions: one engine per OS process, created inside that process.

SQLite connections get WAL, a busy timeout and foreign keys on every connection.
Writes go through :func:`write_transaction` (migrations aside): on SQLite it starts with
``BEGIN IMMEDIATE`` (a deferred transaction that reads first cannot take the write lock
once another writer has committed since: "database is locked" at once, whatever the busy
timeout), and on both databases it waits for the lock at most ``WRITE_LOCK_WAIT_S``,
then raises :class:`DatabaseBusy`. Slow work (password hashing, loading a model) is
done before the transaction, never inside it: on SQLite the lock is the whole database's.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from prometheus_client import Counter
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from bearwatch.errors import BearwatchError, DatabaseNotReady


class DatabaseBusy(BearwatchError, sa.exc.OperationalError):
    """A write could not get the database's write lock within its bound. Defined here,
    not in bearwatch.errors, so that module stays free of SQLAlchemy (capture children
    import it and start in a hurry).
    Also an OperationalError: the workers wait it out like any database hiccup, while the
    CLI and the dashboard show it as one line."""

    def __init__(self, message: str, orig: BaseException | None = None) -> None:
        # SQLAlchemy types orig as an exception; None only reaches the message, which __str__ replaces.
        sa.exc.OperationalError.__init__(self, None, None, orig)  # type: ignore[arg-type]
        self.message = message

    def __str__(self) -> str:
        return self.message

    def __reduce__(self) -> Any:  # DBAPIError's would call __init__ with its own arguments
        return type(self), (self.message,)


WRITE_LOCK_WAIT_S = 15.0
"""How long in all a write waits for the write lock before it gives up with DatabaseBusy:
on SQLite the busy handler (its own backoff) plus our retries of BEGIN IMMEDIATE, on
PostgreSQL ``lock_timeout``. Other SQLite statements get the same busy timeout."""
WRITE_IDLE_LIMIT_S = 60.0
"""On PostgreSQL the server ends a write transaction whose client has sent nothing for this
long (idle_in_transaction_session_timeout), releasing its row locks: a write transaction
does no slow work inside (see above), so its client is frozen (SIGSTOP, a paused VM) or
hung. Without it an inference worker frozen while claiming ahead kept those frames locked,
and the other workers' SKIP LOCKED claims passed them by for as long as it stayed frozen."""
_RETRY_FIRST_S, _RETRY_MAX_S = 0.01, 0.25  # backoff between BEGIN IMMEDIATE tries

DB_WRITE_BUSY = Counter(
    "bearwatch_db_write_busy_total", "Writes given up because the write lock stayed taken past WRITE_LOCK_WAIT_S"
)


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))


def _sqlite_on_connect(dbapi_conn: Any, _record: Any) -> None:
    # pysqlite's own transaction handling would defeat BEGIN IMMEDIATE; we emit
    # BEGIN ourselves in the "begin" event below.
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute(f"PRAGMA busy_timeout={_ms(WRITE_LOCK_WAIT_S)}")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()


def _sqlite_on_begin(conn: sa.Connection) -> None:
    wait_ms = conn.get_execution_options().get("sqlite_write_wait_ms")
    if wait_ms is None:
        conn.exec_driver_sql("BEGIN")
        return
    # A write's BEGIN waits only what is left of its bound; the connection keeps the default.
    conn.exec_driver_sql(f"PRAGMA busy_timeout={int(wait_ms)}")
    try:
        conn.exec_driver_sql("BEGIN IMMEDIATE")
    finally:
        conn.exec_driver_sql(f"PRAGMA busy_timeout={_ms(WRITE_LOCK_WAIT_S)}")


def make_engine(url: str, **kwargs: Any) -> sa.Engine:
    """Create this process's engine for ``url``; SQLite files get their directory made."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(url, **kwargs)
        sa.event.listen(engine, "connect", _sqlite_on_connect)
        sa.event.listen(engine, "begin", _sqlite_on_begin)
        return engine
    kwargs.setdefault("pool_pre_ping", True)  # survive a database restart
    # bearwatch's statements are short; JIT-compiling one with many cheap branches (the
    # review queue's, over every site) takes seconds where running it takes milliseconds.
    connect_args = dict(kwargs.pop("connect_args", None) or {})
    connect_args["options"] = f"{connect_args.get('options', '')} -c jit=off".strip()
    return sa.create_engine(url, connect_args=connect_args, **kwargs)


def missing_sqlite_file(url: str) -> Path | None:
    """The SQLite file ``url`` names when it does not exist yet (connecting would create
    an empty one), else None (it exists, in memory, or another database)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:":
        return None
    path = Path(parsed.database)
    return None if path.exists() else path


def session_factory(engine: sa.Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def _is_lock_timeout(exc: sa.exc.OperationalError) -> bool:
    """SQLite's "database is locked" (SQLITE_BUSY and its kinds), PostgreSQL's lock_timeout."""
    orig = exc.orig
    code = getattr(orig, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF == 5
    return getattr(orig, "sqlstate", None) == "55P03" or "database is locked" in str(orig)


def _busy(exc: sa.exc.OperationalError, wait_s: float) -> DatabaseBusy:
    return DatabaseBusy(
        f"the database is busy: no write lock within {wait_s:g} s (other writers held it); "
        "nothing was changed, try again",
        exc.orig,
    )


def _begin_write(session: Session, wait_s: float) -> None:
    """Take the write lock now: SQLite's BEGIN IMMEDIATE, tried again with backoff (a BUSY
    can come back without the busy handler waiting) until ``wait_s`` is spent; PostgreSQL
    bounds each lock wait of the transaction with lock_timeout."""
    if session.get_bind().dialect.name != "sqlite":
        session.execute(sa.text(f"SET LOCAL lock_timeout = {_ms(wait_s)}"))
        session.execute(sa.text(f"SET LOCAL idle_in_transaction_session_timeout = {_ms(WRITE_IDLE_LIMIT_S)}"))
        return
    deadline, delay = time.monotonic() + wait_s, _RETRY_FIRST_S
    while True:
        left = deadline - time.monotonic()
        try:
            session.connection(execution_options={"sqlite_write_wait_ms": _ms(left)})
            return
        except sa.exc.OperationalError as exc:
            session.rollback()
            if not _is_lock_timeout(exc):
                raise
            if time.monotonic() + delay >= deadline:
                DB_WRITE_BUSY.inc()
                raise _busy(exc, wait_s) from None
        time.sleep(delay)
        delay = min(delay * 2, _RETRY_MAX_S)


@contextmanager
def write_transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One unit of work that changes the database: commit on success, roll back on error.
    It takes the write lock up front, waiting at most WRITE_LOCK_WAIT_S (DatabaseBusy
    after that, also an OperationalError, so workers retry it as a database hiccup)."""
    wait_s = WRITE_LOCK_WAIT_S
    with factory() as session:
        _begin_write(session, wait_s)
        try:
            yield session
            session.commit()
        except sa.exc.OperationalError as exc:
            session.rollback()
            if isinstance(exc, DatabaseBusy) or not _is_lock_timeout(exc):
                raise
            DB_WRITE_BUSY.inc()
            raise _busy(exc, wait_s) from None
        except BaseException:
            session.rollback()
            raise


def upsert_insert(session: Session, entity: Any) -> postgresql.Insert | sqlite.Insert:
    """An INSERT of ``entity`` that takes ON CONFLICT clauses, in the session's database's
    dialect (both spell them alike)."""
    make = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    return make(entity)


def error_line(exc: sa.exc.DBAPIError) -> str:
    """The first line of a database error, for a log line without a traceback (the database
    restarting or unreachable is expected, not a bug)."""
    return (str(exc.orig or exc).strip().splitlines() or [type(exc).__name__])[0]


def check_reachable(engine: sa.Engine) -> None:
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except sa.exc.OperationalError as exc:
        raise DatabaseNotReady(
            f"cannot reach the database at {engine.url.render_as_string(hide_password=True)}: "
            f"{error_line(exc)}"
        ) from None
