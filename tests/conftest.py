"""Shared fixtures: every database test runs on SQLite and on the real PostgreSQL.

PostgreSQL is reached at BEARWATCH_TEST_PG_URL (default: 127.0.0.1:5432, database
`test`, trust auth); each test gets a fresh database, dropped afterwards. Under CI=true
an unreachable PostgreSQL fails the run; elsewhere its tests are skipped with a reason.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from bearwatch.db import make_engine, session_factory
from bearwatch.migrations import alembic_config as make_alembic_config
from bearwatch.migrations import require_head, upgrade_to_head
from tests.assets import asset_dir, made_once

# One compute thread per test process and per process it starts (they inherit the
# environment): torch's OpenMP and MKL pools and numpy/scipy's OpenBLAS all read
# OMP_NUM_THREADS. `make test` runs two workers on two cores beside the subprocesses they
# start; with the default of a thread per core, the threads of one operation wait for each
# other by spinning while the cores run someone else: on a busy machine a training step
# then costs about five times the CPU (and four times the wall time) of one thread.
# Set before any test module imports torch or numpy; a developer's own OMP_NUM_THREADS wins.
os.environ.setdefault("OMP_NUM_THREADS", "1")

PG_ADMIN_URL = os.environ.get("BEARWATCH_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
_pg_problem: str | None = None


def _pg_conninfo(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def pytest_sessionstart(session: pytest.Session) -> None:
    global _pg_problem
    try:
        with psycopg.connect(_pg_conninfo(PG_ADMIN_URL), connect_timeout=5):
            pass
    except psycopg.Error as exc:
        _pg_problem = f"PostgreSQL at {make_url(PG_ADMIN_URL).render_as_string()} unreachable: {exc}"
        if os.environ.get("CI") == "true":
            raise pytest.UsageError(f"{_pg_problem} (CI=true: PostgreSQL tests must run, not skip)") from exc
    _start_training_the_demo_model(session.config)


# The demo model, trained in the background from the start of a parallel run (the xdist
# controller starts it; see demo_model_path). Otherwise the first test that needs it trains it
# on one core (one compute thread) while the other worker, whose test also needs it, waits
# idle on the lock: minutes of one core unused.
_demo_model_trainer: subprocess.Popen[bytes] | None = None

def _start_training_the_demo_model(config: pytest.Config) -> None:
    global _demo_model_trainer
    controller = not hasattr(config, "workerinput") and bool(getattr(config.option, "numprocesses", None))
    if not controller or os.environ.get("BEARWATCH_TEST_ASSETS"):  # a kept asset folder: trained once, not killed midway
        return
    root = config._tmp_path_factory.getbasetemp()  # type: ignore[attr-defined]  # the workers' temp folders' parent
    log = (root / "demo-model-training.log").open("wb")
    _demo_model_trainer = subprocess.Popen(
        [sys.executable, "-m", "tests.assets", str(asset_dir(root, "demo-model"))], stdout=log, stderr=log,
    )
    log.close()


def pytest_unconfigure(config: pytest.Config) -> None:
    if _demo_model_trainer is not None and _demo_model_trainer.poll() is None:  # the run ended first
        _demo_model_trainer.kill()
        _demo_model_trainer.wait()


def _create_pg_database(template: str | None = None) -> str:
    if _pg_problem:
        pytest.skip(_pg_problem)
    name = f"bearwatch_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(_pg_conninfo(PG_ADMIN_URL), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))
    return name


def _drop_pg_database(name: str) -> None:
    with psycopg.connect(_pg_conninfo(PG_ADMIN_URL), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _pg_database_url(name: str) -> str:
    return make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)


class MigratedTemplates:
    """A database of each kind migrated to head once per test process; a test that asks
    for ``engine`` gets a copy of it (SQLite: the file copied; PostgreSQL: CREATE DATABASE
    ... TEMPLATE) instead of running the whole migration chain again: 0.3 s (SQLite) and
    about 1 s (PostgreSQL) a test. The migrations themselves are tested on empty databases
    (tests/bearwatch/test_migrations.py, pytest-alembic's ``alembic_engine``)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._sqlite: Path | None = None
        self._pg: str | None = None

    def sqlite_copy(self, target: Path) -> None:
        if self._sqlite is None:
            path = self.folder / "migrated.db"
            eng = make_engine(f"sqlite:///{path}")
            upgrade_to_head(eng)
            with eng.connect() as conn:  # everything in the main file: the copy is the whole database
                conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
            eng.dispose()
            self._sqlite = path
        shutil.copyfile(self._sqlite, target)

    def pg_template(self) -> str:
        if self._pg is None:
            name = _create_pg_database()
            eng = make_engine(_pg_database_url(name))
            upgrade_to_head(eng)
            eng.dispose()  # a template must have no connection when it is copied
            self._pg = name
        return self._pg

    def close(self) -> None:
        if self._pg is not None:
            _drop_pg_database(self._pg)


@pytest.fixture(scope="session")
def migrated_templates(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MigratedTemplates]:
    templates = MigratedTemplates(tmp_path_factory.mktemp("migrated"))
    yield templates
    templates.close()


@contextmanager
def _fresh_pg_database(template: str | None = None) -> Iterator[str]:
    """A new PostgreSQL database (a copy of ``template`` if given), dropped afterwards."""
    name = _create_pg_database(template)
    try:
        yield _pg_database_url(name)
    finally:
        _drop_pg_database(name)


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test."""
    with _fresh_pg_database() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database of each kind: the same test runs on both. Empty, or, when the test uses
    ``engine``, already at head (a copy of ``migrated_templates``)."""
    migrated = "engine" in request.fixturenames
    if request.param == "sqlite":
        path = tmp_path / "bearwatch.db"
        if migrated:
            request.getfixturevalue("migrated_templates").sqlite_copy(path)
        yield f"sqlite:///{path}"
        return
    template = request.getfixturevalue("migrated_templates").pg_template() if migrated else None
    with _fresh_pg_database(template) as url:
        yield url


@pytest.fixture
def engine(database_url: str) -> Iterator[sa.Engine]:
    """An engine on a database migrated to head (``database_url`` copied it from the template)."""
    eng = make_engine(database_url)
    require_head(eng)
    yield eng
    eng.dispose()


@pytest.fixture
def factory(engine: sa.Engine) -> sessionmaker[Session]:
    return session_factory(engine)


# pytest-alembic: its standard tests run against `alembic_engine`, here on both databases.
@pytest.fixture
def alembic_config():  # type: ignore[no-untyped-def]
    return make_alembic_config()


@pytest.fixture
def alembic_engine(database_url: str) -> Iterator[sa.Engine]:
    eng = make_engine(database_url)
    yield eng
    eng.dispose()


@pytest.fixture
def data_env(tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Environment for a bearwatch subprocess on this test's database and data dir."""
    env = {"BEARWATCH_DATA_DIR": str(tmp_path / "data"), "BEARWATCH_DATABASE_URL": database_url}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


def _asset_dir(tmp_path_factory: pytest.TempPathFactory, name: str) -> Path:
    """Where session-wide demo assets go. BEARWATCH_TEST_ASSETS (a developer's choice,
    unset in CI) keeps them between runs. Under pytest-xdist (`make test` runs two workers)
    every worker's temporary folder sits in one shared parent, so the assets go there and
    are made once for the whole run (tests.assets.made_once)."""
    keep = os.environ.get("BEARWATCH_TEST_ASSETS")
    if keep:
        return Path(keep) / name
    root = tmp_path_factory.getbasetemp()
    return asset_dir(root.parent if os.environ.get("PYTEST_XDIST_WORKER") else root, name)


# Tests that train the demo model wait on it: about 70 s on a quiet 2-core machine, over
# 10 minutes on a loaded one, so they get a timeout that a loaded machine cannot hit.
DEMO_MODEL_TIMEOUT_S = 3600


@pytest.fixture(scope="session")
def demo_model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo model, trained once per test session (pretrained=False, on generated footage;
    in the background from the start of a parallel run: _start_training_the_demo_model).
    Only tests about the demo itself use it; mark them ``timeout(DEMO_MODEL_TIMEOUT_S)``."""
    from bearwatch.demo.model import ensure_demo_model

    folder = _asset_dir(tmp_path_factory, "demo-model")
    return made_once(folder, lambda: ensure_demo_model(folder))


TINY_MODEL_NAME = "tiny-bear-model.pkl"


@pytest.fixture(scope="session")
def model_export_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real fastai export (``learn.export()``: resnet18 learner, classes bear/deer/empty) that
    trains in seconds: one epoch on 60 images per class at 32 px. For tests that need "an
    export", not a good model; its training images sit beside it (``demo-train/``), like the
    demo model's. It tells bears from the rest only roughly."""
    from bearwatch.demo.model import train_demo_model

    path = _asset_dir(tmp_path_factory, "tiny-model") / TINY_MODEL_NAME
    return made_once(
        path.parent, lambda: path if path.exists() else train_demo_model(path, per_class=60, epochs=1, image_size=32)
    )


@pytest.fixture(scope="session")
def demo_footage(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The four demo camera clips, generated once per test session."""
    from bearwatch.demo.footage import DEMO_CAMERAS, ensure_demo_footage

    folder = _asset_dir(tmp_path_factory, "footage")
    return made_once(folder, lambda: ensure_demo_footage(folder, DEMO_CAMERAS))


def wait_for(what: str, check: Callable[[], bool], timeout: float = 20.0, interval: float = 0.1) -> None:
    """Poll ``check`` until it is true; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(interval)


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run the real `bearwatch` command in a subprocess."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "bearwatch", *args], env=full_env, capture_output=True, text=True, timeout=timeout
    )
