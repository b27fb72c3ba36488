"""The shadow loop's lanes, in-process on both databases: a drift pass that takes long
(here one that blocks until released) holds no alert, a failing measurement job stops
nothing, stop ends every lane, and only the leader runs the measurements."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from prometheus_client import REGISTRY
from sqlalchemy.orm import Session, sessionmaker

import shadow.loop
from bearwatch.demo.simulate import SimSpec, create_site, simulate
from bearwatch.schema import Alert, Camera, DriftEvent, Stage, utcnow
from shadow.locks import SHADOW_LEADER_KEY
from shadow.loop import Job, measurement_jobs, run_shadow_loop
from shadow.rollout import record_stage_change
from tests.conftest import wait_for
from tests.shadow.helpers import add_frame, make_park
from tests.shadow.scenario import SMALL

ROUND_S = 0.05
DAY = timedelta(days=1)


@dataclass
class Running:
    """The loop in a thread, with a job in the alert lane counting its rounds."""

    thread: threading.Thread
    stop: threading.Event
    lines: list[str]
    rounds: list[int] = field(default_factory=list)

    def wait_rounds(self, n: int) -> None:
        target = len(self.rounds) + n
        wait_for(f"{n} rounds of the alert lane", lambda: len(self.rounds) >= target, timeout=30)

    def end(self) -> None:
        self.stop.set()
        self.thread.join(30)


StartLoop = Callable[[list[Job]], Running]


@pytest.fixture
def start_loop(factory: sessionmaker[Session]) -> Iterator[StartLoop]:
    started: list[Running] = []

    def start(extra: list[Job]) -> Running:
        stop, lines = threading.Event(), list[str]()
        rounds: list[int] = []
        tick = Job("tick", lambda f, n: rounds.append(1))
        thread = threading.Thread(target=run_shadow_loop, args=(factory, stop), daemon=True, kwargs={
            "interval_s": ROUND_S, "echo": lines.append, "extra_jobs": [*extra, tick]})
        running = Running(thread, stop, lines, rounds)
        started.append(running)
        thread.start()
        return running

    yield start
    for running in started:
        running.end()


def _alerted(factory: sessionmaker[Session], frame_id: int) -> bool:
    with factory() as session:
        return session.scalar(sa.select(sa.func.count()).where(Alert.frame_id == frame_id)) == 1


def _limited_park(factory: sessionmaker[Session]) -> tuple[int, int]:
    now = utcnow()
    park = make_park(factory, stage=Stage.LIMITED, trial=(now - timedelta(hours=1), now + timedelta(days=7)),
                     thresholds={"alert_cooldown_s": 0})
    return park.cameras[0], park.model_id


def _gauge(name: str, job: str) -> float:
    return REGISTRY.get_sample_value(f"bearwatch_shadow_job_{name}", {"task": job}) or 0.0


def test_a_drift_pass_that_does_not_end_holds_no_alert(
    factory: sessionmaker[Session], start_loop: StartLoop, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    camera, model = _limited_park(factory)
    in_drift, release = threading.Event(), threading.Event()

    def endless_drift(factory: sessionmaker[Session], now: datetime) -> int:
        in_drift.set()
        release.wait(60)
        return 0

    guarded: list[datetime] = []
    monkeypatch.setattr(shadow.loop, "run_drift_checks", endless_drift)
    monkeypatch.setattr(shadow.loop, "run_guard_all", lambda factory, now: guarded.append(now))
    monkeypatch.setattr(shadow.loop, "LANE_SLOW_S", 0.0)  # any pass longer than its period is slow
    caplog.set_level(logging.WARNING, logger="shadow.loop")
    try:
        loop = start_loop(measurement_jobs(guard_every_s=0.01, drift_every_s=0.1))
        assert in_drift.wait(30)
        bear = add_frame(factory, camera, utcnow() - timedelta(seconds=5), model_id=model, score=0.95)
        loop.wait_rounds(5)  # blocks on the old loop: its one thread is in the drift pass
        assert _alerted(factory, bear)
        assert loop.lines[0].endswith("; drift lane: drift; measurements lane: camera_hours, guard")
        guards = len(guarded)
        wait_for("the guard to run beside the drift pass", lambda: len(guarded) > guards, timeout=10)
        # Ops see the stuck pass: since when it runs, and a warning; the alert lane succeeds.
        assert 0 < _gauge("running_since_timestamp_seconds", "drift") < _gauge("last_success_timestamp_seconds", "alerts")
        wait_for("the slow-lane warning", lambda: "job drift has run for" in caplog.text, timeout=10)
        loop.end()  # the drift pass is still in flight: stop does not wait for it past its bound
        assert not loop.thread.is_alive() and loop.lines[-1] == "shadow loop: stopped"
        assert "job drift still running at stop; abandoned" in caplog.text
    finally:
        release.set()


def test_a_failing_measurement_job_stops_no_alert_and_runs_again(
    factory: sessionmaker[Session], start_loop: StartLoop, monkeypatch: pytest.MonkeyPatch,
) -> None:
    camera, model = _limited_park(factory)
    tries: list[datetime] = []

    def broken_guard(factory: sessionmaker[Session], now: datetime) -> None:
        tries.append(now)
        raise RuntimeError("the guard is broken")

    monkeypatch.setattr(shadow.loop, "run_guard_all", broken_guard)
    loop = start_loop(measurement_jobs(guard_every_s=0.01, drift_every_s=3600))
    wait_for("the guard to fail twice", lambda: len(tries) >= 2, timeout=30)
    bear = add_frame(factory, camera, utcnow() - timedelta(seconds=5), model_id=model, score=0.95)
    loop.wait_rounds(5)
    assert _alerted(factory, bear)
    wait_for("the guard to be tried again", lambda: len(tries) >= 4, timeout=30)


def test_stop_ends_every_lane(factory: sessionmaker[Session], start_loop: StartLoop) -> None:
    measured: list[datetime] = []
    loop = start_loop([Job("measure", lambda f, now: measured.append(now), lane=shadow.loop.MEASUREMENT_LANE)])
    wait_for("the measurement lane to run", lambda: len(measured) >= 3, timeout=30)
    loop.end()
    assert not loop.thread.is_alive()
    assert not [t for t in threading.enumerate() if t.name == f"shadow-{shadow.loop.MEASUREMENT_LANE}"]
    after = len(measured)
    threading.Event().wait(10 * ROUND_S)
    assert len(measured) == after


def test_only_the_leader_measures_on_postgresql(factory: sessionmaker[Session], start_loop: StartLoop) -> None:
    engine = factory.kw["bind"]
    if engine.dialect.name != "postgresql":
        pytest.skip("leadership is PostgreSQL's (on SQLite every loop runs every lane)")
    measured: list[datetime] = []
    other = engine.connect().execution_options(isolation_level="AUTOCOMMIT")  # another loop, the leader
    try:
        assert other.execute(sa.text("SELECT pg_try_advisory_lock(:k)"), {"k": SHADOW_LEADER_KEY}).scalar()
        loop = start_loop([Job("measure", lambda f, now: measured.append(now), lane=shadow.loop.MEASUREMENT_LANE)])
        wait_for("the loop to wait", lambda: "shadow loop: waiting, another shadow loop is the leader" in loop.lines)
        threading.Event().wait(20 * ROUND_S)
        assert measured == [] and loop.rounds == []
        other.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": SHADOW_LEADER_KEY})
        wait_for("the loop to lead and measure", lambda: len(measured) >= 1, timeout=30)
    finally:
        other.close()


def test_a_loop_that_loses_leadership_stops_measuring(factory: sessionmaker[Session], start_loop: StartLoop) -> None:
    engine = factory.kw["bind"]
    if engine.dialect.name != "postgresql":
        pytest.skip("leadership is PostgreSQL's")
    measured: list[datetime] = []
    loop = start_loop([Job("measure", lambda f, now: measured.append(now), lane=shadow.loop.MEASUREMENT_LANE)])
    wait_for("the loop to lead and measure", lambda: len(measured) >= 2, timeout=30)
    other = engine.connect().execution_options(isolation_level="AUTOCOMMIT")
    try:
        # Another loop queues for the lock; the leader's connection dies: the waiter gets it.
        leader_pid = other.execute(sa.text(
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND objid = :k AND granted"), {"k": SHADOW_LEADER_KEY}).scalar()
        killer = threading.Thread(target=lambda: _terminate_soon(engine, leader_pid), daemon=True)
        killer.start()
        other.execute(sa.text("SELECT pg_advisory_lock(:k)"), {"k": SHADOW_LEADER_KEY})  # waits for the kill
        wait_for("the loop to wait", lambda: "shadow loop: waiting, another shadow loop is the leader" in loop.lines)
        after = len(measured)
        threading.Event().wait(20 * ROUND_S)
        assert len(measured) == after
    finally:
        other.close()


def _terminate_soon(engine: sa.Engine, pid: int) -> None:
    threading.Event().wait(0.5)  # the waiter queues first
    with engine.connect() as conn:
        conn.execute(sa.text("SELECT pg_terminate_backend(:p)"), {"p": pid})


def _failures(job: str) -> float:
    return REGISTRY.get_sample_value("bearwatch_shadow_job_failures_total", {"task": job}) or 0.0


def test_both_lanes_write_side_by_side_without_failing(factory: sessionmaker[Session], start_loop: StartLoop,
                                                       tmp_path: Path) -> None:
    """The real guard and drift back to back in their lane while flags become alerts: on
    SQLite both lanes take the write lock (BEGIN IMMEDIATE) and neither gives up."""
    now = utcnow()
    spec = SimSpec(seed=7, cameras=2, model_recall=0.98, model_precision=0.9)
    with factory.begin() as session:
        site = create_site(session, "north", spec, now - 3 * DAY, tmp_path / "models", SMALL)
        site.thresholds = {**site.thresholds, "alert_cooldown_s": 0}  # an alert per flag
        simulate(session, site, spec, now - 3 * DAY, now - DAY, tmp_path / "frames")
        record_stage_change(session, site, Stage.LIMITED, actor="ops", reason="gate passed", now=now - DAY,
                            trial=(now - DAY, now + 7 * DAY))
        simulate(session, site, spec, now - DAY, now, tmp_path / "frames")
        camera = session.scalars(sa.select(Camera.id).where(Camera.site_id == site.id).order_by(Camera.id)).first()
        model = site.rollout_model_id
    assert camera is not None and model is not None
    before = {job: _failures(job) for job in ("alerts", "drift", "guard")}
    loop = start_loop(measurement_jobs(guard_every_s=0.01, drift_every_s=0.01))

    def drift_events() -> int:
        with factory() as session:
            return session.scalar(sa.select(sa.func.count()).select_from(DriftEvent)) or 0

    bears = []
    for i in range(10):
        bears.append(add_frame(factory, camera, utcnow() - timedelta(seconds=30 - i), model_id=model, score=0.95))
        loop.wait_rounds(1)
    wait_for("three drift passes", lambda: drift_events() >= 3, timeout=120)
    wait_for("every flag alerted", lambda: all(_alerted(factory, b) for b in bears), timeout=30)
    assert {job: _failures(job) for job in before} == before
