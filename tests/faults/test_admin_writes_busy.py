"""Admin writes while the workers keep the database busy (issue 15 item 1).

Three background writers stand in for ingest, inference and the shadow loop: each runs
write transactions back to back as the real workers do (``write_transaction``), holding
the write lock 50-200 ms each with a little work of its own in between, so on SQLite the
lock is nearly always taken. Every admin act of the CLI (real ``bearwatch`` processes)
and of the dashboard (AppTest) must still get through, on SQLite and PostgreSQL. A lock
held longer than ``WRITE_LOCK_WAIT_S`` must end in one clear line: on the CLI's stderr
with a non-zero exit, on the Users page as an error that keeps the typed form.
"""

from __future__ import annotations

import os
import random
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa
import yaml
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

import bearwatch.db
from bearwatch.db import WRITE_LOCK_WAIT_S, make_engine, session_factory, write_transaction
from bearwatch.schema import Camera, Heartbeat, ModelRole, ModelVersion, Role, Site, User, utcnow
from bearwatch.users import authenticate
from tests.dashboard.conftest import (
    _fresh_streamlit_caches,  # noqa: F401 (autouse: the dashboard's caches per test)
    login,
    open_app,
)
from tests.dashboard.seed import PASSWORD, Seeded, seed_park

PARTS = ("ingest", "inference", "shadow")
NEW_PASSWORD = "a new night password"


@pytest.fixture
def park(factory: sessionmaker[Session], data_env: dict[str, str], tmp_path: Path) -> Seeded:
    seeded = seed_park(factory, tmp_path / "data" / "frames")
    with factory.begin() as session:
        for part in PARTS:
            session.add(Heartbeat(part=part, host="test", pid=os.getpid()))
    return seeded


@dataclass
class Load:
    """What the background writers did: commits per part, seconds the lock was held, errors."""

    commits: dict[str, int] = field(default_factory=lambda: dict.fromkeys(PARTS, 0))
    held_s: float = 0.0
    errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _worker_step(part: str, session: Session, rng: random.Random) -> None:
    """One unit of a worker's write: ingest updates a camera's health row (as the sampler
    does), inference and the shadow loop their own rows; then the transaction takes a while."""
    now = utcnow()
    if part == "ingest":
        ids = list(session.scalars(sa.select(Camera.id).order_by(Camera.id)))
        camera_id = ids[rng.randrange(len(ids))]
        session.execute(sa.update(Camera).where(Camera.id == camera_id).values(last_frame_at=now))
    session.execute(sa.update(Heartbeat).where(Heartbeat.part == part).values(beat_at=now, progress_at=now))
    time.sleep(rng.uniform(0.05, 0.2))


def _writer(url: str, part: str, stop: threading.Event, load: Load) -> None:
    engine = make_engine(url)
    factory = session_factory(engine)
    rng = random.Random(part)
    try:
        while not stop.is_set():
            try:
                with write_transaction(factory) as session:
                    started = time.monotonic()
                    _worker_step(part, session, rng)
                with load.lock:
                    load.commits[part] += 1
                    load.held_s += time.monotonic() - started
            except sa.exc.OperationalError as exc:  # a real worker logs it and goes on
                with load.lock:
                    load.errors.append(f"{part}: {exc}")
            time.sleep(rng.uniform(0.005, 0.03))  # its own work before the next write
    finally:
        engine.dispose()


@contextmanager
def busy_workers(url: str) -> Iterator[Load]:
    load, stop = Load(), threading.Event()
    threads = [threading.Thread(target=_writer, args=(url, part, stop, load), daemon=True) for part in PARTS]
    for thread in threads:
        thread.start()
    try:
        yield load
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)


def bearwatch_cli(env: dict[str, str], *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bearwatch", *args], env={**os.environ, **env}, input=stdin,
                          capture_output=True, text=True, timeout=180, check=False)


def _ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, f"{result.args[3:]} failed under load:\n{result.stderr[-3000:]}"
    return result.stdout


def _park_file(path: Path, model_path: Path | None = None) -> Path:
    """west: gate gets a new interval and is switched off, creek is new, a threshold
    changes; with ``model_path``, model ``bear`` is west's rollout model."""
    park: dict[str, Any] = {
        "sites": [{"name": "west", "thresholds": {"min_reviewed": 200},
                   "cameras": [{"name": "gate", "source": "rtsp://10.9.9.9/live", "interval": 3, "enabled": False},
                               {"name": "creek", "source": "rtsp://10.9.9.10/live", "interval": 4}]}],
    }
    if model_path is not None:
        park["models"] = [{"name": "bear", "path": str(model_path), "positive": ["bear"], "sites": ["west"]}]
    path.write_text(yaml.safe_dump(park, sort_keys=False), encoding="utf-8")
    return path


def _click(app: Any, label: str) -> None:
    next(b for b in app.button if b.label == label).click().run()


def _no_error(app: Any) -> None:
    assert not app.exception and not app.error, [e.value for e in app.error] or app.exception


def _dashboard_admin_writes(park: Seeded) -> None:
    app = login(open_app(), "admin", PASSWORD)
    app.switch_page("views/users.py").run()
    app.text_input(key="new_user_name").input("lena")
    app.selectbox(key="new_user_role").select("ranger")
    app.text_input(key="new_user_password").input(NEW_PASSWORD)
    _click(app, "Add user")
    _no_error(app)
    assert "user lena added (ranger)" in [s.value for s in app.success]
    app.selectbox(key="role_user").select("lena")
    app.selectbox(key="role_new").select("ops")
    _click(app, "Change role")
    _no_error(app)
    assert "lena is now ops" in [s.value for s in app.success]

    app.switch_page("views/cameras.py").run()
    app.selectbox(key="camera_toggle_choice").select("north/creek (enabled)").run()
    app.button(key="camera_toggle").click().run()
    _no_error(app)

    app.switch_page("views/models.py").run()
    app.number_input(key=f"model_threshold_{park.model_id}").set_value(0.7)
    app.selectbox(key=f"model_role_{park.model_id}").select("challenger")
    _click(app, "Save")
    _no_error(app)


def _load_was_real(load: Load, database_url: str, seconds: float) -> None:
    with load.lock:
        commits, held_s, errors = dict(load.commits), load.held_s, list(load.errors)
    assert errors == [], "the workers' own writes must not fail either"
    assert all(n >= 5 for n in commits.values()), f"every worker kept writing: {commits}"
    if make_url(database_url).get_backend_name() == "sqlite":
        # The harness itself: the lock really was taken nearly all the time.
        assert held_s / (seconds + 1.0) > 0.6, f"lock held {held_s:.0f} s of {seconds:.0f} s"


def test_every_admin_write_gets_through_while_the_workers_write_at_full_speed(
    park: Seeded, data_env: dict[str, str], factory: sessionmaker[Session], database_url: str, tmp_path: Path,
) -> None:
    env = data_env
    with busy_workers(database_url) as load:
        time.sleep(1.0)  # the workers are under way
        started = time.monotonic()
        _ok(bearwatch_cli(env, "user", "add", "rosa", "--role", "ops", "--password-stdin", stdin=PASSWORD + "\n"))
        _ok(bearwatch_cli(env, "user", "set-role", "rosa", "ranger"))
        _ok(bearwatch_cli(env, "user", "passwd", "rosa", "--password-stdin", stdin=NEW_PASSWORD + "\n"))
        _ok(bearwatch_cli(env, "site", "add", "west"))
        _ok(bearwatch_cli(env, "camera", "add", "west", "gate", "rtsp://10.9.9.8/live", "--interval", "2"))
        applied = _ok(bearwatch_cli(env, "config", "apply", str(_park_file(tmp_path / "park.yaml"))))
        _ok(bearwatch_cli(env, "drift-reference", "west", "--from", "2024-01-01", "--to", "2024-02-01"))
        _dashboard_admin_writes(park)
        _load_was_real(load, database_url, time.monotonic() - started)

    assert "updated camera west/gate" in applied and "created camera west/creek" in applied
    with factory() as session:
        rosa = session.scalar(sa.select(User).where(User.name == "rosa"))
        assert rosa is not None and rosa.role is Role.RANGER
        lena = session.scalar(sa.select(User).where(User.name == "lena"))
        assert lena is not None and lena.role is Role.OPS
        west = session.scalar(sa.select(Site).where(Site.name == "west"))
        assert west is not None and west.thresholds["min_reviewed"] == 200 and west.drift_reference_start is not None
        cams = {c.name: c for c in session.scalars(sa.select(Camera).where(Camera.site_id == west.id))}
        assert (cams["gate"].interval_s, cams["gate"].enabled) == (3, False) and cams["creek"].enabled
        demo = session.get(ModelVersion, park.model_id)
        assert demo is not None and (demo.threshold, demo.role) == (0.7, ModelRole.CHALLENGER)
        assert session.get(Camera, park.camera_ids["creek"]).enabled is False  # type: ignore[union-attr]
    with factory.begin() as session:
        assert authenticate(session, "rosa", NEW_PASSWORD) is not None


def test_registering_a_model_gets_through_while_the_workers_write_at_full_speed(
    park: Seeded, data_env: dict[str, str], factory: sessionmaker[Session], database_url: str,
    model_export_path: Path, tmp_path: Path,
) -> None:
    env = data_env
    with busy_workers(database_url) as load:
        time.sleep(1.0)
        started = time.monotonic()
        _ok(bearwatch_cli(env, "model", "register", str(model_export_path), "--name", "bear", "--positive", "bear",
                          "--site", "north"))
        park_file = _park_file(tmp_path / "park.yaml", model_export_path)
        park_file.write_text(park_file.read_text().replace("name: bear\n", "name: bear-2\n"))  # a new one
        applied = _ok(bearwatch_cli(env, "config", "apply", str(park_file)))
        _load_was_real(load, database_url, time.monotonic() - started)
    assert "created model bear-2" in applied
    with factory() as session:
        models = {m.name: m.id for m in session.scalars(sa.select(ModelVersion))}
        rollout = {name: model_id for name, model_id in session.execute(sa.select(Site.name, Site.rollout_model_id))}
    assert rollout["north"] == models["bear"] and rollout["west"] == models["bear-2"]


# --- the lock held past the bound ------------------------------------------------------


@contextmanager
def write_lock_held(url: str) -> Iterator[None]:
    """Another client holds the write lock until the block ends: on SQLite a transaction
    begun IMMEDIATE; on PostgreSQL the tables the admin writes touch, locked EXCLUSIVE
    (reads go on, writes wait)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        conn = sqlite3.connect(str(parsed.database), isolation_level=None)
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            conn.execute("ROLLBACK")
            conn.close()
        return
    with psycopg.connect(parsed.set(drivername="postgresql").render_as_string(hide_password=False)) as pg:
        pg.execute("LOCK TABLE users, sites, cameras IN EXCLUSIVE MODE")
        try:
            yield
        finally:
            pg.rollback()


def test_write_transaction_waits_out_its_bound_then_raises_database_busy(
    park: Seeded, factory: sessionmaker[Session], database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Also an OperationalError: the workers' handlers for a database hiccup wait it out."""
    from bearwatch.db import DatabaseBusy
    from bearwatch.errors import BearwatchError

    monkeypatch.setattr(bearwatch.db, "WRITE_LOCK_WAIT_S", 0.5)
    with write_lock_held(database_url):
        started = time.monotonic()
        with pytest.raises(DatabaseBusy) as caught, write_transaction(factory) as session:
            session.add(Site(name="west"))
            session.flush()
        waited = time.monotonic() - started
    assert isinstance(caught.value, BearwatchError) and isinstance(caught.value, sa.exc.OperationalError)
    assert 0.5 <= waited < 10, waited
    with write_transaction(factory) as session:  # free again, and the connection is usable
        session.add(Site(name="west"))
    if make_url(database_url).get_backend_name() == "sqlite":
        with factory() as session:  # the connection's own busy timeout is back to the bound
            assert session.connection().exec_driver_sql("PRAGMA busy_timeout").scalar() == 500


def test_the_cli_gives_up_after_the_bound_with_one_line(
    park: Seeded, data_env: dict[str, str], factory: sessionmaker[Session], database_url: str
) -> None:
    commands: list[tuple[list[str], str | None]] = [
        (["user", "add", "rosa", "--role", "ops", "--password-stdin"], PASSWORD + "\n"),
        (["user", "set-role", "ranger", "ops"], None),
        (["user", "passwd", "ops", "--password-stdin"], NEW_PASSWORD + "\n"),
        (["site", "add", "west"], None),
        (["camera", "add", "north", "pond", "rtsp://10.9.9.11/live"], None),
    ]
    with write_lock_held(database_url):
        started = time.monotonic()
        procs = [
            subprocess.Popen([sys.executable, "-m", "bearwatch", *args], env={**os.environ, **data_env},
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for args, _ in commands
        ]
        results = [(args, *proc.communicate(stdin, timeout=180), proc.returncode)
                   for proc, (args, stdin) in zip(procs, commands, strict=True)]
        elapsed = time.monotonic() - started

    for args, _stdout, stderr, code in results:
        assert code != 0 and "Traceback" not in stderr, f"{args}: exit {code}\n{stderr[-2000:]}"
        assert stderr.strip().splitlines() == [
            (f"error: the database is busy: no write lock within {WRITE_LOCK_WAIT_S:g} s (other writers held it); "
             "nothing was changed, try again")
        ], f"{args}: {stderr}"
    assert elapsed >= WRITE_LOCK_WAIT_S, "each command waited out the bound before giving up"
    with factory() as session:
        assert session.scalar(sa.select(User).where(User.name == "rosa")) is None
        assert session.scalar(sa.select(Site).where(Site.name == "west")) is None
        assert session.scalar(sa.select(User.role).where(User.name == "ranger")) is Role.RANGER
    # Once the lock is free the same command goes through.
    _ok(bearwatch_cli(data_env, "user", "add", "rosa", "--role", "ops", "--password-stdin", stdin=PASSWORD + "\n"))


def _busy_count() -> float:
    return bearwatch.db.DB_WRITE_BUSY._value.get()


def test_the_users_page_shows_the_error_and_keeps_the_form(
    park: Seeded, factory: sessionmaker[Session], database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bearwatch.db, "WRITE_LOCK_WAIT_S", 1.0)  # the same path, a shorter wait
    app = login(open_app(), "admin", PASSWORD)
    app.switch_page("views/users.py").run()
    app.text_input(key="new_user_name").input("rosa")
    app.selectbox(key="new_user_role").select("ops")
    app.text_input(key="new_user_password").input(NEW_PASSWORD)
    before = _busy_count()
    with write_lock_held(database_url):
        _click(app, "Add user")
    assert not app.exception
    assert [e.value for e in app.error] == [
        "the database is busy: no write lock within 1 s (other writers held it); nothing was changed, try again"
    ]
    assert app.text_input(key="new_user_name").value == "rosa", "the form keeps what was typed"
    assert app.text_input(key="new_user_password").value == NEW_PASSWORD
    assert app.selectbox(key="new_user_role").value == "ops"
    assert _busy_count() == before + 1, "the failed write is counted (bearwatch_db_write_busy_total)"
    with factory() as session:
        assert session.scalar(sa.select(User).where(User.name == "rosa")) is None

    _click(app, "Add user")  # the lock is free again: the same form, sent again
    assert not app.exception and not app.error
    assert "user rosa added (ops)" in [s.value for s in app.success]
    assert app.text_input(key="new_user_name").value == "" and app.text_input(key="new_user_password").value == ""
    with factory.begin() as session:
        actor = authenticate(session, "rosa", NEW_PASSWORD)
    assert actor is not None and actor.role is Role.OPS


# --- slow work stays outside the write transaction ------------------------------------


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # PostgreSQL has no database-wide write lock
def test_slow_steps_run_before_the_write_lock_is_taken(
    park: Seeded, data_env: dict[str, str], factory: sessionmaker[Session], database_url: str,
    monkeypatch: pytest.MonkeyPatch, model_export_path: Path, tmp_path: Path,
) -> None:
    """While a command hashes a password or loads a model a worker commits a write. That
    must neither wait for the command (it holds no lock yet) nor break it (a transaction
    that read before that commit could not write after it: SQLite's "database is locked")."""
    from typer.testing import CliRunner

    import bearwatch.users
    import inference.registry
    from bearwatch.cli import app

    probes: list[str] = []

    def worker_commits(step: str) -> None:
        conn = sqlite3.connect(str(make_url(database_url).database), isolation_level=None, timeout=0)
        try:
            conn.execute("BEGIN IMMEDIATE")  # no wait: fails at once if the command holds the lock
            conn.execute("UPDATE heartbeats SET waiting = waiting + 1 WHERE part = 'ingest'")
            conn.execute("COMMIT")
            probes.append(step)
        finally:
            conn.close()

    def slow(step: str, real: Callable[..., Any]) -> Callable[..., Any]:
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            worker_commits(step)
            return real(*args, **kwargs)
        return wrapped

    hasher = bearwatch.users._hasher()

    class ProbingHasher:
        def __getattr__(self, name: str) -> Any:
            return getattr(hasher, name)

        hash = staticmethod(slow("hash", hasher.hash))

    monkeypatch.setattr(bearwatch.users, "_hasher", ProbingHasher)
    monkeypatch.setattr(inference.registry, "unpickle_learner", slow("load", inference.registry.unpickle_learner))
    park_file = _park_file(tmp_path / "park.yaml", model_export_path)
    park_file.write_text(park_file.read_text().replace("name: bear\n", "name: bear-2\n"))  # one it registers itself
    runner = CliRunner()
    for args, stdin in (
        (["user", "add", "rosa", "--role", "ops", "--password-stdin"], PASSWORD + "\n"),
        (["user", "passwd", "rosa", "--password-stdin"], NEW_PASSWORD + "\n"),
        (["model", "register", str(model_export_path), "--name", "bear", "--positive", "bear", "--site", "north"], None),
        (["config", "apply", str(park_file)], None),
    ):
        result = runner.invoke(app, args, input=stdin)
        assert result.exit_code == 0, f"{args}: {result.output}\n{result.exception!r}"
    assert probes == ["hash", "hash", "load", "load"]
