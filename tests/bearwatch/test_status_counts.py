"""`bearwatch status` counts (bearwatch.status.counts): exact on a small database, and on a
big PostgreSQL one a cost that does not grow with history. A count(*) over frames read the
whole table on every call (seconds at a season's 10M frames); past the limit the totals are
the planner's estimate, said so, and the queue stays exact."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from bearwatch.schema import Frame, FrameQueueEntry, FrameStatus, utcnow
from bearwatch.status import counts
from tests.shadow.helpers import add_frame, at, make_park
from tests.statements import buffers_touched, statements_sent

BIG = 200_000


def _pending_frame(factory: sessionmaker[Session], camera_id: int, seconds: int) -> int:
    with factory.begin() as session:
        frame = Frame(camera_id=camera_id, captured_at=at(seconds), path=f"p{seconds}.jpg", sha256="0" * 64,
                      size_bytes=1, width=1, height=1)
        session.add(frame)
        session.flush()
        return frame.id


def test_small_databases_get_exact_counts_by_status(factory: sessionmaker[Session]) -> None:
    park = make_park(factory)
    cam = park.cameras[0]
    for i in range(3):
        add_frame(factory, cam, at(i), model_id=park.model_id, score=0.9 if i == 0 else 0.1)
    pending = [_pending_frame(factory, cam, 100 + i) for i in range(3)]
    failed = _pending_frame(factory, cam, 200)
    with factory.begin() as session:  # one frame leased by a worker, one given up on
        session.get(FrameQueueEntry, pending[0]).claimed_until = utcnow() + timedelta(minutes=2)  # type: ignore[union-attr]
        session.execute(sa.delete(FrameQueueEntry).where(FrameQueueEntry.frame_id == failed))
        session.get(Frame, failed).status = FrameStatus.FAILED  # type: ignore[union-attr]
    with factory() as session:
        got = counts(session)
    assert got.frames_by_status == {"pending": 2, "claimed": 1, "scored": 3, "failed": 1}
    assert (got.frames, got.predictions, got.flagged, got.approximate) == (7, 3, 1, False)


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_big_postgresql_database_is_counted_without_reading_its_frames(
    engine: sa.Engine, factory: sessionmaker[Session]
) -> None:
    park = make_park(factory)
    cam = park.cameras[0]
    with engine.begin() as conn:  # a season's worth of scored frames, in one statement
        conn.execute(sa.text(
            "INSERT INTO frames (camera_id, captured_at, path, sha256, size_bytes, width, height, status) "
            "SELECT :cam, :t0 + make_interval(secs => n), 'f' || n, repeat('0', 64), 1, 1, 1, 'scored' "
            "FROM generate_series(1, :n) AS n"
        ), {"cam": cam, "t0": at(0), "n": BIG})
        conn.execute(sa.text("ANALYZE frames"))
        frame_pages = conn.scalar(sa.text(  # frames' partitions (bearwatch.partitions)
            "SELECT sum(relpages) FROM pg_class WHERE oid IN (SELECT relid FROM pg_partition_tree('frames') "
            "UNION SELECT 'frames'::regclass)"))
    pending = [_pending_frame(factory, cam, -1 - i) for i in range(4)]
    with factory() as session, statements_sent(engine) as sent:
        got = counts(session, exact_limit=BIG // 2)
    assert got.approximate
    assert abs(got.frames - BIG) < BIG * 0.05
    assert got.frames_by_status == {"pending": len(pending), "claimed": 0}  # exact; scored/failed left out
    touched = buffers_touched(engine, sent)
    assert frame_pages > 1_000
    assert touched < 100, f"status read {touched} blocks; frames alone has {frame_pages} pages"
