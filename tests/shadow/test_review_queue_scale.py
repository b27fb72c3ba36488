"""The review queue of a busy window (issue 13): the page and its count are what a ranger
expects (flags of the last hour newest first, older flags, then the audit sample oldest
first; the count is the whole queue), on SQLite and PostgreSQL; on PostgreSQL the queue's
statement reads the flags and the audit sample through the partial indexes of migration
0016, not every frame of the window."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from bearwatch.park_file import Thresholds
from bearwatch.schema import Stage
from shadow import audit_design, review_queue
from shadow.review_queue import FRESH_FLAG, QueueReason, QueueSize, review_queue_and_size
from tests.shadow.helpers import T0, add_scored_frames, add_user, make_park, queue_plan
from tests.statements import plan_nodes, root_name, rows_read, statements_sent

EVERY = timedelta(seconds=10)
PER_CAMERA = 1500  # two cameras: 3,000 frames in the last ~4 hours, 30 of them flagged
NOW = T0 + timedelta(days=1)


def _fill(factory: sessionmaker[Session]) -> tuple[list[int], list[int], dict[int, Any]]:
    """Frames of two cameras up to NOW, every 100th flagged (score 0.9), the others scored
    low (the day stratum). Returns the flagged and the audit sample's frame ids and every
    frame's capture time."""
    park = make_park(factory, stage=Stage.MANUAL)

    def frame(i: int, c: int, camera_id: int) -> tuple[int, int, datetime, float]:
        frame_id = 1 + 2 * i + c
        score = 0.9 if frame_id % 100 == 7 else (frame_id % 97) / 500
        return frame_id, camera_id, NOW - (PER_CAMERA - i) * EVERY + timedelta(seconds=c), score

    frames = [frame(i, c, camera_id) for i in range(PER_CAMERA) for c, camera_id in enumerate(park.cameras)]
    predictions = add_scored_frames(factory, park.model_id, frames)
    t = Thresholds()
    flagged = [p["frame_id"] for p in predictions if p["flagged"]]
    audit = [p["frame_id"] for p in predictions
             if not p["flagged"] and audit_design.in_audit(p["frame_id"], p["positive_score"], False, 0.5, t)]
    return flagged, audit, {frame_id: captured_at for frame_id, _, captured_at, _ in frames}


def test_a_busy_window_queues_fresh_flags_older_flags_then_the_audit_sample(
    engine: sa.Engine, factory: sessionmaker[Session],
) -> None:
    flagged, audit, captured = _fill(factory)
    ana = add_user(factory, "ana")
    fresh = sorted((f for f in flagged if captured[f] >= NOW - FRESH_FLAG), key=lambda f: captured[f], reverse=True)
    older = sorted((f for f in flagged if captured[f] < NOW - FRESH_FLAG), key=lambda f: captured[f], reverse=True)
    expected = ([(f, QueueReason.FLAGGED) for f in fresh + older]
                + [(f, QueueReason.AUDIT) for f in sorted(audit, key=lambda f: captured[f])])
    assert len(flagged) == 30 and 30 < len(audit) < 150
    with statements_sent(engine) as seen, factory() as session:
        items, waiting = review_queue_and_size(session, ana, NOW)
    assert [(i.frame_id, i.reason) for i in items] == expected[:50]
    assert waiting == QueueSize(len(expected))
    if engine.dialect.name != "postgresql":
        return
    # The queue's statement again under EXPLAIN, planned as the queue plans it.
    nodes = queue_plan(engine, seen)
    indexes = {root_name(n["Index Name"]) for n in nodes if "Index Name" in n}
    assert {"ix_frames_audit_captured_at", "ix_predictions_flagged_scored_at"} <= indexes, indexes
    # Every frame of the window read once is 3,000 rows (the old statement read it several
    # times over); the page and the count now read the sampled tenth and the flags.
    frames_read = rows_read(nodes, ["frames"])
    assert frames_read < 3000 / 4, frames_read


# The planner's costs that keep small tables out of parallel plans, zeroed: as a table
# the size of a season's makes parallel plans look cheap (module doc of shadow.review_queue).
PARALLEL_LOOKS_FREE = ("SET LOCAL parallel_setup_cost = 0; SET LOCAL parallel_tuple_cost = 0; "
                       "SET LOCAL min_parallel_index_scan_size = 0; SET LOCAL min_parallel_table_scan_size = 0; ")


def test_the_queue_is_never_planned_in_parallel_even_where_parallel_looks_free(
    engine: sa.Engine, factory: sessionmaker[Session],
) -> None:
    """At the season bench's 10M frames the planner read every flagged prediction in a
    parallel scan (a 360 ms verdict round trip, 50 ms without): the queue's statements are
    planned without parallel workers, the page's and the count's alike."""
    if engine.dialect.name != "postgresql":
        pytest.skip("parallel plans are PostgreSQL's")
    _fill(factory)
    ana = add_user(factory, "ana")
    for count in (False, True):
        with statements_sent(engine) as seen, factory() as session:
            review_queue_and_size(session, ana, NOW, count=count)
        queue = max((st for st in seen if st.reads), key=lambda st: len(st.sql))
        nodes = plan_nodes(engine, queue, setup=PARALLEL_LOOKS_FREE + review_queue._INDEX_PLANS)
        parallel = [n["Node Type"] for n in nodes if n.get("Parallel Aware") or n["Node Type"].startswith("Gather")]
        assert not parallel, (count, parallel)


def test_a_page_reads_a_pages_worth_of_held_alerts_however_many_wait(
    engine: sa.Engine, factory: sessionmaker[Session],
) -> None:
    """Held alerts nobody decided stay held (``held_escalation: notify``) and pile up over a
    trial. The page read every one of them and sorted them (2,137 at the season bench's 10M);
    now each site's longest held from its own index range, a page's worth, and they come
    longest held first, each alert's frames oldest first."""
    from shadow.alerts import process_new_flags

    parks = [make_park(factory, name=name, stage=Stage.LIMITED, trial=(T0, NOW + timedelta(days=7)),
                       thresholds={"alert_cooldown_s": 0}) for name in ("north", "south")]
    batches, per_batch = 6, 50  # per site: flag passes an hour apart, each making 50 held alerts
    for batch in range(batches):
        for p, park in enumerate(parks):
            first = 1 + 100_000 * p + per_batch * batch
            add_scored_frames(factory, park.model_id, [
                (first + i, park.cameras[i % 2], NOW - timedelta(hours=20 - batch, seconds=-i), 0.9) for i in range(per_batch)])
        if batch == 1:  # captured before all the others, flagged in the second pass
            add_scored_frames(factory, parks[0].model_id, [(90_000, parks[0].cameras[0], NOW - timedelta(hours=21), 0.9)])
        process_new_flags(factory, NOW - timedelta(hours=batches - batch), max_age_s=None)
    ana = add_user(factory, "ana")
    with factory() as session:
        items, waiting = review_queue_and_size(session, ana, NOW)
    assert waiting == QueueSize(2 * batches * per_batch + 1)
    assert [i.reason for i in items] == [QueueReason.PENDING_ALERT] * 50
    assert items == sorted(items, key=lambda i: (i.pending_since, i.captured_at, i.frame_id))
    assert {i.pending_since for i in items} == {NOW - timedelta(hours=batches)}  # the first pass's
    assert 90_000 not in [i.frame_id for i in items]  # captured first, but held since the second pass
    if engine.dialect.name != "postgresql":
        return
    with statements_sent(engine) as seen, factory() as session:
        assert review_queue_and_size(session, ana, NOW, count=False)[0] == items
    alerts_read = rows_read(queue_plan(engine, seen), ["alerts"])
    assert alerts_read <= 2 * (per_batch + 1) + 50, alerts_read  # a page per site: 650 (every held alert) before
