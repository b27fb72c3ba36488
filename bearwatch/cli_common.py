"""Helpers every `bearwatch` subcommand module uses: the database, the acting user.

Subcommands that belong to one part live in that part's command module
(`bearwatch/commands/<part>.py`) with a ``register(app)`` function that cli.py calls.

The CLI modules import what a command needs inside the command: every `bearwatch`
invocation imports them all, and `--help` or a quick command must not wait for torch,
OpenCV, SciPy, Alembic or pydantic to load.
"""

from __future__ import annotations

import getpass
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from sqlalchemy.orm import Session, sessionmaker

if TYPE_CHECKING:
    from wsgiref.simple_server import WSGIServer


def cli_actor() -> str:
    """The operator running the command, for ledger rows written from the CLI."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


@contextmanager
def open_database(create: bool = False) -> Iterator[sessionmaker[Session]]:
    """This process's engine and session factory, refusing a database not at head. Only
    ``create`` (`bearwatch init`) may make a SQLite file: a mistyped path must not leave an
    empty database behind."""
    from bearwatch.db import make_engine, missing_sqlite_file, session_factory
    from bearwatch.errors import DatabaseNotReady
    from bearwatch.migrations import require_head
    from bearwatch.settings import load_settings

    settings = load_settings()
    missing = None if create else missing_sqlite_file(settings.database_url)
    if missing is not None:
        raise DatabaseNotReady(f"no database at {missing}; run `bearwatch init` to create it")
    engine = make_engine(settings.database_url)
    try:
        if not create:
            require_head(engine)
        yield session_factory(engine)
    finally:
        engine.dispose()


def serve_metrics(port: int | None, part: str) -> WSGIServer | None:
    """Serve this process's Prometheus /metrics on ``port`` (None: not at all), on the
    BEARWATCH_METRICS_ADDRESS (loopback by default), as ``part`` (bearwatch.metrics)."""
    if port is None:
        return None
    from bearwatch.metrics import serve
    from bearwatch.settings import load_settings

    return serve(part, port, load_settings().metrics_address)


def stop_on_signals() -> threading.Event:
    """An event set by SIGTERM or Ctrl-C: long-running commands finish their unit of work and stop."""
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    return stop


@contextmanager
def progress(label: str, total: int, unit: str) -> Iterator[Callable[[int], None]]:
    """Report long work: a bar on a terminal, lines at intervals on stderr otherwise (a
    supervisor's log or a pipe, where a bar is never drawn). Yields ``advance(n)``."""
    import sys

    import typer

    from bearwatch.progress import ProgressLog

    if sys.stderr.isatty():
        with typer.progressbar(length=total, label=f"{label} ({total} {unit})", file=sys.stderr) as bar:
            yield bar.update
        return
    log = ProgressLog(label, total, unit=unit, echo=lambda line: typer.echo(line, err=True))
    yield log.advance
    log.finish()
