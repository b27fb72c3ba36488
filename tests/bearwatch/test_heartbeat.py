"""Heartbeats: what `bearwatch status` and the supervisor learn about each process."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from bearwatch.heartbeat import Health, HeartbeatWriter, judge, mark_failed, process_health
from bearwatch.schema import Heartbeat, ProcessState, utcnow


@pytest.mark.parametrize(
    ("state", "beat_age", "progress_age", "waiting", "expected"),
    [
        (ProcessState.RUNNING, 1, 1, 5, Health.OK),
        (ProcessState.RUNNING, 1, 500, 0, Health.IDLE),  # nothing to do is not stuck
        (ProcessState.RUNNING, 1, 500, 5, Health.STUCK),
        (ProcessState.RUNNING, 1, 120, 5, Health.OK),  # exactly at the limit
        (ProcessState.RUNNING, 31, 1, 0, Health.STALE),
        (ProcessState.STOPPED, 999, 999, 0, Health.STOPPED),
        (ProcessState.FAILED, 1, 1, 0, Health.FAILED),
    ],
)
def test_judge(state: ProcessState, beat_age: float, progress_age: float, waiting: int, expected: Health) -> None:
    assert judge(state, beat_age, progress_age, waiting) is expected


def test_beats_are_throttled_and_progress_and_stop_are_recorded(factory: sessionmaker[Session]) -> None:
    clock = [0.0]
    writer = HeartbeatWriter(factory, "inference", every_s=5, clock=lambda: clock[0])
    writer.beat(waiting=7)
    with factory() as session:
        first = session.scalars(sa.select(Heartbeat)).one()
    clock[0] = 1.0
    writer.beat(progressed=True, waiting=3)  # inside the throttle window: not written
    with factory() as session:
        assert session.scalars(sa.select(Heartbeat)).one().waiting == 7
    clock[0] = 6.0
    writer.beat()
    with factory() as session:
        row = session.scalars(sa.select(Heartbeat)).one()
    assert row.waiting == 3 and row.progress_at > first.progress_at and row.state is ProcessState.RUNNING
    writer.stopped()
    with factory() as session:
        assert session.scalars(sa.select(Heartbeat)).one().state is ProcessState.STOPPED


def test_process_health_reports_a_stuck_worker_and_a_failed_one(factory: sessionmaker[Session]) -> None:
    now = utcnow()
    with factory.begin() as session:
        session.add(Heartbeat(part="inference", host="gpu1", pid=10, beat_at=now, progress_at=now - timedelta(minutes=10),
                              waiting=40, started_at=now - timedelta(hours=1)))
        session.add(Heartbeat(part="ingest", host="edge1", pid=11, beat_at=now, progress_at=now, waiting=0,
                              started_at=now))
        mark_failed(session, "shadow", "edge1", 12, "exited with code 1; budget spent")
    with factory() as session:
        health = {p.part: p for p in process_health(session, now)}
    assert health["inference"].health is Health.STUCK and health["inference"].waiting == 40
    assert health["ingest"].health is Health.OK
    assert health["shadow"].health is Health.FAILED and "budget" in (health["shadow"].detail or "")


def test_the_supervisor_probe_judges_a_child_that_never_beat_by_its_start_up_deadline(
    factory: sessionmaker[Session],
) -> None:
    import socket

    from bearwatch.heartbeat import heartbeat_probe

    host = socket.gethostname()
    stuck = heartbeat_probe(factory, host, stuck_after_s=30, startup_deadline_s=300)
    assert not stuck("inference", 4242, 299), "still starting: torch and the model take a while"
    assert stuck("inference", 4242, 301), "hung before its first heartbeat (SIGSTOP while loading the model)"
    with factory.begin() as session:
        now = utcnow()
        session.add(Heartbeat(part="inference", host=host, pid=4242, state=ProcessState.RUNNING, started_at=now,
                              beat_at=now, progress_at=now, waiting=0))
    assert not stuck("inference", 4242, 400), "beating: judged by its heartbeat from then on"
    with factory.begin() as session:
        session.execute(sa.update(Heartbeat).values(beat_at=utcnow() - timedelta(seconds=31)))
    assert stuck("inference", 4242, 400), "no beat for longer than stuck_after_s"
