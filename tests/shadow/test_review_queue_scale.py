"""The review queue of a busy window (issue 13): the page and its count are what a ranger
expects (flags of the last hour newest first, older flags, then the audit sample oldest
first; the count is the whole queue), on SQLite and PostgreSQL; on PostgreSQL the queue's
statement reads the flags and the audit sample through the partial indexes of migration
0016, not every frame of the window."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from bearwatch.park_file import Thresholds
from bearwatch.schema import Frame, FrameStatus, Prediction, Stage
from shadow import audit_design
from shadow.review_queue import FRESH_FLAG, QueueReason, QueueSize, review_queue_and_size
from tests.shadow.helpers import T0, add_user, make_park
from tests.statements import statements_sent

EVERY = timedelta(seconds=10)
PER_CAMERA = 1500  # two cameras: 3,000 frames in the last ~4 hours, 30 of them flagged
NOW = T0 + timedelta(days=1)


def _fill(factory: sessionmaker[Session]) -> tuple[list[int], list[int], dict[int, Any]]:
    """Frames of two cameras up to NOW, every 100th flagged (score 0.9), the others scored
    low (the day stratum). Returns the flagged and the audit sample's frame ids and every
    frame's capture time."""
    park = make_park(factory, stage=Stage.MANUAL)
    frames: list[dict[str, Any]] = []
    predictions: list[dict[str, Any]] = []
    for i in range(PER_CAMERA):
        for c, camera_id in enumerate(park.cameras):
            frame_id = 1 + 2 * i + c
            at = NOW - (PER_CAMERA - i) * EVERY + timedelta(seconds=c)
            score = 0.9 if frame_id % 100 == 7 else (frame_id % 97) / 500
            frames.append({"id": frame_id, "camera_id": camera_id, "captured_at": at, "path": f"{camera_id}/{i}.jpg",
                           "sha256": f"{frame_id:064d}", "size_bytes": 1000, "width": 64, "height": 48,
                           "brightness": 120.0, "contrast": 30.0, "is_night": False, "status": FrameStatus.SCORED})
            predictions.append({"frame_id": frame_id, "model_version_id": park.model_id,
                                "probabilities": {"bear": score, "not_bear": 1 - score}, "positive_score": score,
                                "flagged": score >= 0.5, "ood_score": 0.1, "scored_at": at + timedelta(seconds=2)})
    with factory.begin() as session:
        session.execute(sa.insert(Frame), frames)
        session.execute(sa.insert(Prediction), predictions)
        if session.get_bind().dialect.name == "postgresql":
            session.execute(sa.text("SELECT setval(pg_get_serial_sequence('frames', 'id'), (SELECT max(id) FROM frames))"))
            session.execute(sa.text("ANALYZE frames; ANALYZE predictions"))
    t = Thresholds()
    flagged = [p["frame_id"] for p in predictions if p["flagged"]]
    audit = [p["frame_id"] for p in predictions
             if not p["flagged"] and audit_design.in_audit(p["frame_id"], p["positive_score"], False, 0.5, t)]
    return flagged, audit, {f["id"]: f["captured_at"] for f in frames}


def _scans(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from _scans(child)


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
    statement, parameters = max(((st.sql, st.parameters) for st in seen if not st.sql.lstrip().upper().startswith("SET")),
                                key=lambda sp: len(sp[0]))
    with engine.connect() as conn, conn.begin() as transaction:
        conn.exec_driver_sql("SET LOCAL enable_hashjoin = off; SET LOCAL enable_mergejoin = off")
        doc = conn.exec_driver_sql("EXPLAIN (ANALYZE, FORMAT JSON) " + statement, parameters).scalar()
        transaction.rollback()
    plan = (doc if isinstance(doc, list) else [doc])[0]["Plan"]
    nodes = list(_scans(plan))
    indexes = {n.get("Index Name") for n in nodes}
    assert {"ix_frames_audit_captured_at", "ix_predictions_flagged_scored_at"} <= indexes, indexes
    # Every frame of the window read once is 3,000 rows (the old statement read it several
    # times over); the page and the count now read the sampled tenth and the flags.
    frames_read = sum((n.get("Actual Rows", 0) + n.get("Rows Removed by Filter", 0)) * n.get("Actual Loops", 1)
                      for n in nodes if n.get("Relation Name") == "frames")
    assert frames_read < 3000 / 4, frames_read
