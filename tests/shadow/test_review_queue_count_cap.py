"""The review queue's size past its cap (issue 13), on SQLite and PostgreSQL: exact up to the
cap, "at least the cap" past it, a ranger's own verdicts leave it, and on PostgreSQL the
queue's statement reads no more rows when the window holds ten times more flags and
audit frames beyond the cap."""

from __future__ import annotations

from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from bearwatch.auth import Actor
from bearwatch.schema import Stage, Verdict
from shadow.review_queue import QueueReason, QueueSize, queue_size, review_queue_and_size
from shadow.verdicts import submit_verdict
from tests.shadow.helpers import T0, add_scored_frames, add_user, make_park, queue_plan
from tests.statements import rows_read, statements_sent

EVERY = timedelta(seconds=10)
NOW = T0 + timedelta(days=1)
CAP = 5
PAGE = 5
NEWEST_ID = 100_000  # the newest frame's id: older ones count down from it


def _fill(factory: sessionmaker[Session], cameras: tuple[int, ...], model_id: int, steps: range) -> None:
    """Frames of ``cameras`` at ``NOW - step * EVERY`` for each step (ids in capture order,
    so an older step has a lower id), every 100th flagged (score 0.9), the others scored
    low (the day stratum of the audit)."""
    def frame(step: int, c: int, camera_id: int) -> tuple[int, int, datetime, float]:
        frame_id = NEWEST_ID - len(cameras) * step + c
        score = 0.9 if frame_id % 100 == 7 else (frame_id % 97) / 500
        return frame_id, camera_id, NOW - step * EVERY + timedelta(seconds=c), score

    add_scored_frames(factory, model_id, [frame(step, c, camera_id) for step in steps for c, camera_id in enumerate(cameras)])


def _size(factory: sessionmaker[Session], ranger: Actor, cap: int) -> QueueSize:
    """The count read with the page, and alone as the Review page reads it after the page: the same."""
    with factory() as session:
        with_page = review_queue_and_size(session, ranger, NOW, limit=PAGE, count_cap=cap)[1]
        assert queue_size(session, ranger, NOW, count_cap=cap) == with_page
        return with_page


def test_the_count_is_exact_up_to_the_cap_then_at_least_the_cap(factory: sessionmaker[Session]) -> None:
    park = make_park(factory, stage=Stage.MANUAL)
    _fill(factory, park.cameras, park.model_id, range(300))  # 600 frames: 6 flagged and the audit sample
    ana = add_user(factory, "ana")
    true_count = _size(factory, ana, cap=10_000)
    assert not true_count.capped and true_count.count > CAP + 1
    assert _size(factory, ana, cap=true_count.count) == true_count  # at the cap: still exact

    below = _size(factory, ana, cap=true_count.count - 1)
    assert below == QueueSize(true_count.count - 1, capped=True) and str(below) == f"{true_count.count - 1}+"
    small = _size(factory, ana, cap=CAP)
    assert small == QueueSize(CAP, capped=True) and str(small) == "5+" and small.exceeds(PAGE)

    # What this ranger decides leaves their count: one verdict, and the queue is at the cap.
    with factory() as session:
        first = review_queue_and_size(session, ana, NOW, limit=PAGE)[0][0]
    assert first.reason is QueueReason.FLAGGED
    submit_verdict(factory, first.frame_id, ana, Verdict.CONFIRM, NOW)
    assert _size(factory, ana, cap=true_count.count - 1) == QueueSize(true_count.count - 1)
    assert str(QueueSize(12_345)) == "12,345" and str(QueueSize(1000, capped=True)) == "1,000+"


def test_past_the_cap_the_count_reads_no_more_when_the_window_holds_ten_times_more(
    engine: sa.Engine, factory: sessionmaker[Session],
) -> None:
    park = make_park(factory, stage=Stage.MANUAL)
    ana = add_user(factory, "ana")
    steps = 5000  # two cameras: 10,000 frames in the last 14 hours, 100 flagged
    _fill(factory, park.cameras, park.model_id, range(steps // 10))  # the newest tenth first
    with statements_sent(engine) as before:
        assert _size(factory, ana, cap=CAP) == QueueSize(CAP, capped=True)
    small = rows_read(queue_plan(engine, before)) if engine.dialect.name == "postgresql" else 0
    _fill(factory, park.cameras, park.model_id, range(steps // 10, steps))  # then the other nine tenths
    with statements_sent(engine) as after, factory() as session:
        items, size = review_queue_and_size(session, ana, NOW, limit=PAGE, count_cap=CAP)
    assert size == QueueSize(CAP, capped=True) and len(items) == PAGE
    if engine.dialect.name != "postgresql":
        return
    big = rows_read(queue_plan(engine, after))
    # The whole window's flags and audit-index frames would be ten times as many rows.
    assert big < 1.5 * small, (small, big)


def test_follow_ups_read_what_the_page_and_the_count_need_not_every_neighbour_of_every_miss(
    engine: sa.Engine, factory: sessionmaker[Session],
) -> None:
    """Each bear the audit found brings the frames within its cooldown for follow-up. The
    queue read every neighbour of every found miss (48k frames at the season bench's 10M,
    1.4 s a page); it now stops after a page and the count's cap."""
    from bearwatch.schema import Decision, Frame, ReviewReason, User

    park = make_park(factory, stage=Stage.MANUAL)
    ana, _ = add_user(factory, "ana"), add_user(factory, "bo")
    _fill(factory, park.cameras, park.model_id, range(3000))  # two cameras, 8 h 20 min

    def find_misses(count: int) -> None:
        """``count`` audit-found misses on the first camera, 10 minutes apart (30 frames
        either side of each within the 5-minute cooldown), decided by bo."""
        with factory.begin() as session:
            bo = session.scalar(sa.select(User.id).where(User.name == "bo"))
            ids = session.scalars(sa.select(Frame.id).where(Frame.camera_id == park.cameras[0])
                                  .order_by(Frame.captured_at.desc())).all()
            session.execute(sa.delete(Decision))
            session.execute(sa.insert(Decision), [
                {"frame_id": ids[100 + 60 * k] + (1 if ids[100 + 60 * k] % 100 == 7 else 0), "reviewer_id": bo,
                 "verdict": Verdict.MISSED, "decided_at": NOW, "review_reason": ReviewReason.AUDIT}
                for k in range(count)])

    def rows_for_page() -> tuple[int, list[QueueReason]]:
        with statements_sent(engine) as sent, factory() as session:
            items, _ = review_queue_and_size(session, ana, NOW, limit=PAGE, count_cap=CAP)
        read = rows_read(queue_plan(engine, sent)) if engine.dialect.name == "postgresql" else 0
        return read, [i.reason for i in items]

    find_misses(40)
    read, reasons = rows_for_page()
    assert len(reasons) == PAGE
    with factory() as session:
        waiting = review_queue_and_size(session, ana, NOW, limit=5000, count_cap=10_000)[0]
    follow_ups = sum(i.reason is QueueReason.FOLLOW_UP for i in waiting)
    assert follow_ups > 40 * 50  # about 60 a miss
    if engine.dialect.name == "postgresql":
        # all the statement's sections together read less than half the follow-ups (before:
        # 10,285 rows, every neighbour of every miss read again under the other sections' work)
        assert read < follow_ups / 2, (read, follow_ups)
