"""The inference queue in frame_queue (migration 0013), on SQLite and PostgreSQL: a frame
inserted pending is queued whoever inserts it, its claim (worker, lease, attempts) is
kept in the queue, it leaves the queue when it is scored or fails for good, and on
PostgreSQL scoring updates each frame once, in place (HOT), without a new entry in every
index of frames."""

from __future__ import annotations

import time
from collections.abc import Collection
from datetime import datetime, timedelta, timezone

import numpy as np
import psycopg
import pytest
import sqlalchemy as sa
from alembic import command
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from bearwatch.db import make_engine, session_factory
from bearwatch.migrations import alembic_config, upgrade_to_head
from bearwatch.schema import Camera, Frame, FrameQueueEntry, FrameStatus, ModelVersion, Prediction, Site, utcnow
from bearwatch.status import counts
from inference.queue import Claim, ModelScores, claim_batch, commit_results, release, worker_id

T0 = datetime(2026, 6, 1, 12, 0)  # naive UTC, as the database stores it
LEASE_S = 60.0


def _camera_and_model(factory: sessionmaker[Session]) -> tuple[int, int]:
    with factory.begin() as session:
        site = Site(name="north")
        session.add(site)
        session.flush()
        camera = Camera(site_id=site.id, name="c", source="x.avi")
        model = ModelVersion(name="m", path="m.pkl", sha256="0" * 64, classes=["bear", "empty"], positive_classes=["bear"])
        session.add_all([camera, model])
        session.flush()
        return camera.id, model.id


def _camera_by_sql(conn: sa.Connection) -> int:
    """A site and a camera as the schema of an older revision has them."""
    conn.execute(sa.text("INSERT INTO sites (name, stage, stage_since, trial_scope, thresholds, created_at) "
                         "VALUES ('north', 'manual', :t, '{}', '{}', :t)"), {"t": T0})
    conn.execute(sa.text("INSERT INTO cameras (site_id, name, source, interval_s, enabled, health, consecutive_failures, "
                         "created_at) SELECT id, 'c', 'x.avi', 5, true, 'unknown', 0, :t FROM sites"), {"t": T0})
    return int(conn.execute(sa.text("SELECT id FROM cameras")).scalar_one())


def _insert_by_sql(
    conn: sa.Connection, camera_id: int, statuses: list[str], start: int = 0, old_schema: bool = False
) -> list[int]:
    """Frames inserted by plain SQL, as a seeder or a bulk load would; their ids in order.
    ``old_schema``: frames before 0013, which kept the claim's attempts."""
    paths = [f"site-1/camera-{camera_id}/2026-06-01/{start + k:06d}-abcdef.jpg" for k in range(len(statuses))]
    attempts = (", attempts", ", 0") if old_schema else ("", "")
    conn.execute(
        sa.text(f"INSERT INTO frames (camera_id, captured_at, path, sha256, size_bytes, width, height, status{attempts[0]}) "
                f"VALUES (:camera_id, :captured_at, :path, :sha, 40000, 640, 480, :status{attempts[1]})"),
        [dict(camera_id=camera_id, captured_at=T0 + timedelta(seconds=5 * (start + k)), path=path, sha="0" * 64,
              status=status) for k, (path, status) in enumerate(zip(paths, statuses, strict=True))],
    )
    by_path = dict(conn.execute(sa.text("SELECT path, id FROM frames")).all())
    return [by_path[p] for p in paths]


def _queued(factory: sessionmaker[Session]) -> set[int]:
    with factory() as session:
        return set(session.scalars(sa.select(FrameQueueEntry.frame_id)))


def _leases(factory: sessionmaker[Session]) -> dict[int, tuple[str | None, int]]:
    """frame id: (the worker holding it, attempts) of every queued frame."""
    with factory() as session:
        rows = session.execute(sa.select(FrameQueueEntry.frame_id, FrameQueueEntry.claimed_by, FrameQueueEntry.attempts))
        return {frame_id: (claimed_by, attempts) for frame_id, claimed_by, attempts in rows}


def _statuses(factory: sessionmaker[Session], ids: list[int]) -> list[FrameStatus]:
    with factory() as session:
        by_id = dict(session.execute(sa.select(Frame.id, Frame.status).where(Frame.id.in_(ids))).all())
    return [by_id[i] for i in ids]


def _scores(claim: Claim, model_id: int, skip: Collection[int] = ()) -> list[ModelScores]:
    """The same prediction for each claimed frame (but those in ``skip``)."""
    ids = np.array([f.frame_id for f in claim.frames if f.frame_id not in skip], dtype=np.int64)
    n = len(ids)
    return [ModelScores(model_id, ("bear", "empty"), ids, np.tile(np.float32([0.1, 0.9]), (n, 1)),
                        np.full(n, 0.1), np.zeros(n, bool))]


def test_a_frame_inserted_pending_by_plain_sql_is_scored_and_leaves_the_queue(
    engine: sa.Engine, factory: sessionmaker[Session]
) -> None:
    camera_id, model_id = _camera_and_model(factory)
    with engine.begin() as conn:
        history = _insert_by_sql(conn, camera_id, ["scored", "failed"])
        pending = _insert_by_sql(conn, camera_id, ["pending"] * 3, start=2)
    assert _queued(factory) == set(pending)  # a seeder's scored history is not queued

    claim = claim_batch(factory, 10, LEASE_S)
    assert [f.frame_id for f in claim.frames] == pending
    assert commit_results(factory, claim, _scores(claim, model_id), {}, max_attempts=3) == 3

    assert _statuses(factory, pending) == [FrameStatus.SCORED] * 3
    assert _statuses(factory, history) == [FrameStatus.SCORED, FrameStatus.FAILED]
    assert _queued(factory) == set()
    assert claim_batch(factory, 10, LEASE_S).frames == ()


def test_a_claimed_frame_whose_lease_expired_is_claimed_again(engine: sa.Engine, factory: sessionmaker[Session]) -> None:
    camera_id, model_id = _camera_and_model(factory)
    with engine.begin() as conn:
        ids = _insert_by_sql(conn, camera_id, ["pending"] * 2)
    first = claim_batch(factory, 10, LEASE_S)
    assert claim_batch(factory, 10, LEASE_S).frames == ()  # leased: nobody else takes them
    assert _leases(factory) == {i: (worker_id(), 1) for i in ids}
    assert _statuses(factory, ids) == [FrameStatus.PENDING] * 2  # claimed in the queue, not in frames
    with factory.begin() as session:  # the first worker died; its lease ran out
        session.execute(sa.update(FrameQueueEntry).values(claimed_until=utcnow() - timedelta(seconds=1)))

    again = claim_batch(factory, 10, LEASE_S)
    assert [(f.frame_id, f.attempts) for f in again.frames] == [(i, 2) for i in ids]
    assert commit_results(factory, first, _scores(first, model_id), {}, max_attempts=3) == 0  # lost its lease
    assert _queued(factory) == set(ids)
    assert commit_results(factory, again, _scores(again, model_id), {}, max_attempts=3) == 2
    assert _statuses(factory, ids) == [FrameStatus.SCORED] * 2
    assert _queued(factory) == set()


def test_a_frame_that_keeps_failing_leaves_the_queue_after_its_last_attempt(
    engine: sa.Engine, factory: sessionmaker[Session]
) -> None:
    camera_id, _ = _camera_and_model(factory)
    with engine.begin() as conn:
        [frame_id] = _insert_by_sql(conn, camera_id, ["pending"])
    released = claim_batch(factory, 10, LEASE_S)
    release(factory, released)  # a shutdown: not an attempt, still queued
    assert _leases(factory) == {frame_id: (None, 0)}

    first = claim_batch(factory, 10, LEASE_S)
    assert [f.attempts for f in first.frames] == [1]
    commit_results(factory, first, [], {frame_id: "cannot decode"}, max_attempts=2)
    assert _statuses(factory, [frame_id]) == [FrameStatus.PENDING]  # retried later
    assert _leases(factory) == {frame_id: (None, 1)}

    last = claim_batch(factory, 10, LEASE_S)
    assert [f.attempts for f in last.frames] == [2]
    commit_results(factory, last, [], {frame_id: "cannot decode"}, max_attempts=2)
    assert _statuses(factory, [frame_id]) == [FrameStatus.FAILED]
    with factory() as session:
        assert session.scalar(sa.select(Frame.last_error).where(Frame.id == frame_id)) == "cannot decode"
    assert _queued(factory) == set()
    assert claim_batch(factory, 10, LEASE_S).frames == ()


def test_a_failed_frame_set_back_to_pending_by_hand_is_queued_and_scored(
    engine: sa.Engine, factory: sessionmaker[Session]
) -> None:
    camera_id, model_id = _camera_and_model(factory)
    with engine.begin() as conn:
        failed = _insert_by_sql(conn, camera_id, ["failed", "failed"])
        conn.execute(sa.text("UPDATE frames SET status = 'pending' WHERE id = :id"), {"id": failed[0]})
    assert _queued(factory) == {failed[0]}
    claim = claim_batch(factory, 10, LEASE_S)
    assert [f.frame_id for f in claim.frames] == [failed[0]]
    commit_results(factory, claim, _scores(claim, model_id), {}, max_attempts=3)
    assert _statuses(factory, failed) == [FrameStatus.SCORED, FrameStatus.FAILED]


def test_upgrade_to_0013_keeps_the_waiting_frames_claimable_and_the_leases_held(database_url: str) -> None:
    command.upgrade(alembic_config(database_url), "0012")
    engine = make_engine(database_url)
    try:
        factory = session_factory(engine)
        with engine.begin() as conn:
            camera_id = _camera_by_sql(conn)
            scored, failed, retried, expired, leased, pending = _insert_by_sql(
                conn, camera_id, ["scored", "failed", "pending", "claimed", "claimed", "pending"], old_schema=True)
            live_until = utcnow().replace(tzinfo=None) + timedelta(hours=1)
            for frame_id, until in ((expired, T0), (leased, live_until)):
                conn.execute(sa.text("UPDATE frames SET claim_token = 'old', claimed_by = 'old-host:1', attempts = 1, "
                                     "claimed_until = :until WHERE id = :id"), {"id": frame_id, "until": until})
            conn.execute(sa.text("UPDATE frames SET attempts = 1, last_error = 'cannot decode' WHERE id = :id"),
                         {"id": retried})

        upgrade_to_head(engine)
        with factory.begin() as session:
            model = ModelVersion(name="m", path="m.pkl", sha256="0" * 64, classes=["bear"], positive_classes=["bear"])
            session.add(model)
            session.flush()
            model_id = model.id

        # Each waiting frame queued with its claim: the live lease is still its worker's.
        assert _leases(factory) == {retried: (None, 1), expired: ("old-host:1", 1), leased: ("old-host:1", 1),
                                    pending: (None, 0)}
        claim = claim_batch(factory, 10, LEASE_S)
        assert [(f.frame_id, f.attempts) for f in claim.frames] == [(retried, 2), (expired, 2), (pending, 1)]
        assert commit_results(factory, claim, _scores(claim, model_id), {}, max_attempts=3) == 3
        assert _queued(factory) == {leased}
        assert _statuses(factory, [scored, failed, retried, expired, leased, pending]) == [
            FrameStatus.SCORED, FrameStatus.FAILED, FrameStatus.SCORED, FrameStatus.SCORED, FrameStatus.PENDING,
            FrameStatus.SCORED]
        with factory() as session:  # a frame inserted now is queued: the triggers outlived the upgrade
            session.add(Frame(camera_id=camera_id, captured_at=utcnow(), path="p.jpg", sha256="0" * 64,
                              size_bytes=1, width=1, height=1))
            session.commit()
            new_id = session.scalar(sa.select(Frame.id).where(Frame.path == "p.jpg"))
        assert _queued(factory) == {leased, new_id}
    finally:
        engine.dispose()


def test_status_counts_the_frames_claimed_in_the_queue(engine: sa.Engine, factory: sessionmaker[Session]) -> None:
    camera_id, _ = _camera_and_model(factory)
    with engine.begin() as conn:
        _insert_by_sql(conn, camera_id, ["scored", "pending", "pending", "pending"])
    claim_batch(factory, 2, LEASE_S)
    with factory() as session:
        assert counts(session).frames_by_status == {"pending": 1, "claimed": 2, "scored": 1, "failed": 0}


def test_a_batch_is_committed_in_a_constant_number_of_statements(
    engine: sa.Engine, factory: sessionmaker[Session]
) -> None:
    camera_id, model_id = _camera_and_model(factory)
    with engine.begin() as conn:
        ids = _insert_by_sql(conn, camera_id, ["pending"] * 64)
    claim = claim_batch(factory, 64, LEASE_S)
    broken = {ids[0]: "cannot decode", ids[1]: "cannot decode"}  # retried: they stay queued
    statements: list[str] = []

    def record(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        statements.append(statement)

    sa.event.listen(engine, "before_cursor_execute", record)
    try:
        assert commit_results(factory, claim, _scores(claim, model_id, skip=broken), broken, max_attempts=3) == 64
    finally:
        sa.event.remove(engine, "before_cursor_execute", record)
    reads = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
    writes = [s for s in statements if s.lstrip().upper().startswith(("INSERT", "UPDATE", "DELETE"))]
    assert len(reads) <= 2, reads  # the leases still held, the predictions already stored
    # predictions (on PostgreSQL a COPY, which these events do not see: test_bulk_commit counts it),
    # the frames' results, the queue entries done, the ones to retry
    assert len(writes) <= 4, writes
    assert _leases(factory) == {ids[0]: (None, 1), ids[1]: (None, 1)}
    assert _statuses(factory, ids[:3]) == [FrameStatus.PENDING, FrameStatus.PENDING, FrameStatus.SCORED]


HOT_FRAMES = 1280  # 20 batches of the worker's default 64
HOT_BATCH = 64


def _update_counts(database_url: str) -> tuple[int, int]:
    """(updates, HOT updates) of frames as the statistics collector has them now."""
    conninfo = make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(conninfo) as conn:
        row = conn.execute(  # frames' partitions (bearwatch.partitions), or the plain table
            "SELECT sum(n_tup_upd), sum(n_tup_hot_upd) FROM pg_stat_user_tables "
            "WHERE relid IN (SELECT relid FROM pg_partition_tree('frames') UNION SELECT 'frames'::regclass)").fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_scoring_updates_each_frame_once_in_place_even_while_a_long_transaction_is_open(
    database_url: str, engine: sa.Engine, factory: sessionmaker[Session]
) -> None:
    camera_id, model_id = _camera_and_model(factory)
    with factory.begin() as session:
        session.execute(sa.insert(Frame), [
            dict(camera_id=camera_id, captured_at=T0.replace(tzinfo=timezone.utc) + timedelta(seconds=5 * k), sha256="0" * 64, size_bytes=40_000,
                 path=f"site-1/camera-{camera_id}/2026-06-01/{k:06d}_000000-abcdef.jpg", width=640, height=480,
                 brightness=0.4, contrast=0.2, sharpness=0.1, is_night=False, change_score=0.05)
            for k in range(HOT_FRAMES)
        ])
    # A transaction open meanwhile (a backup, a long report) keeps the old versions of
    # rows from being pruned: the pages must have room for every update on their own.
    conninfo = make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(conninfo) as long_transaction:
        long_transaction.execute("SELECT txid_current()")
        scored = 0
        while (claim := claim_batch(factory, HOT_BATCH, LEASE_S)).frames:
            scored += commit_results(factory, claim, _scores(claim, model_id), {}, max_attempts=3)
    assert scored == HOT_FRAMES
    engine.dispose()  # the workers' backends end and report their statistics

    deadline = time.monotonic() + 30
    while _update_counts(database_url)[0] < HOT_FRAMES and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(0.5)  # any later report too: a second update per frame must show
    updates, hot = _update_counts(database_url)
    assert updates == HOT_FRAMES, f"{updates} updates of frames for {HOT_FRAMES} frames: one per frame, its result"
    non_hot_per_frame = (updates - hot) / HOT_FRAMES
    assert non_hot_per_frame < 0.1, f"{updates - hot} of {updates} updates of frames were not HOT"
    with factory() as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(Prediction)) == HOT_FRAMES
