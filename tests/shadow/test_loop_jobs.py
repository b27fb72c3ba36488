"""The shadow loop in-process: extra jobs run on their schedule, a failing job does not stop the others."""

from __future__ import annotations

import threading
from datetime import datetime

from sqlalchemy.orm import Session, sessionmaker

from shadow.loop import Job, run_shadow_loop


def test_extra_jobs_run_and_a_failing_job_does_not_stop_the_loop(factory: sessionmaker[Session]) -> None:
    stop = threading.Event()
    runs: list[str] = []

    def broken(factory: sessionmaker[Session], now: datetime) -> None:
        runs.append("broken")
        raise RuntimeError("boom")

    def counting(factory: sessionmaker[Session], now: datetime) -> None:
        runs.append("counting")
        if runs.count("counting") >= 3:
            stop.set()

    lines: list[str] = []
    run_shadow_loop(factory, stop, interval_s=0.05, echo=lines.append,
                    extra_jobs=[Job("broken", broken), Job("counting", counting), Job("rare", lambda f, n: runs.append("rare"), every_s=3600)])
    assert runs.count("counting") == 3 and runs.count("broken") == 3 and runs.count("rare") == 1
    assert lines[0] == "shadow loop: jobs alerts, deliver, outbox_depth, escalate, broken, counting, rare, every 0.05s"
    assert lines[1] == "shadow loop: leader" and lines[-1] == "shadow loop: stopped"
