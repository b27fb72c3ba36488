"""A process frozen inside a write transaction (SIGSTOP, a paused VM) must not keep its row
locks for as long as it stays frozen. An inference worker frozen while it claimed a batch
ahead kept those frames locked, and every other worker's claim (FOR UPDATE SKIP LOCKED)
passed them by: they were never scored (seen once in a clean-clone CI run of
tests/faults/test_inference_faults.py). PostgreSQL only: SQLite has no row locks, and a
frozen SQLite writer holds the whole database (its busy bound turns that into DatabaseBusy).
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from inference.queue import claim_batch
from ingest.store import FrameStore
from tests.conftest import wait_for
from tests.inference.helpers import store_frames_at

# The child: the claim's SELECT ... FOR UPDATE ran, then the process stops before it commits.
_FREEZE_IN_A_CLAIM = """
import os, signal, sys
import sqlalchemy as sa
import bearwatch.db as db
db.WRITE_IDLE_LIMIT_S = float(sys.argv[2])
from bearwatch.schema import FrameQueueEntry
factory = db.session_factory(db.make_engine(sys.argv[1]))
with db.write_transaction(factory) as session:
    ids = session.scalars(sa.select(FrameQueueEntry.frame_id).with_for_update(skip_locked=True)).all()
    print(len(ids), flush=True)
    os.kill(os.getpid(), signal.SIGSTOP)
"""


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_writer_frozen_in_its_transaction_releases_its_locks_after_the_idle_limit(
    factory: sessionmaker[Session], database_url: str, tmp_path: Path
) -> None:
    ids = store_frames_at(factory, FrameStore(tmp_path / "frames"), [1.0, 2.0, 3.0])
    child = subprocess.Popen([sys.executable, "-c", _FREEZE_IN_A_CLAIM, database_url, "2"],
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == str(len(ids))
        wait_for("the child to stop", lambda: _stopped(child.pid), 30)
        assert claim_batch(factory, 10, 60).frames == (), "the frozen transaction holds every frame"
        claimed: list[int] = []
        # the idle limit (2 s here) ends the frozen transaction; without it this waits forever
        wait_for("the frozen transaction's locks to go",
                 lambda: bool(claimed.extend(f.frame_id for f in claim_batch(factory, 10, 60).frames) or claimed), 60)
        assert sorted(claimed) == sorted(ids)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(10)


def _stopped(pid: int) -> bool:
    return Path(f"/proc/{pid}/stat").read_text().split(") ")[1].startswith("T")
