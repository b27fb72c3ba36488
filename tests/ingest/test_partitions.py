"""frames and predictions in day partitions on PostgreSQL (migration 0019, ingest.partitions):
partitions made ahead, retention drops old days whole and keeps every piece of evidence
(same id, its predictions, verdicts and file), a verdict racing the drop leaves no orphan,
and the migration keeps every row on both databases."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import datetime, time, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from sqlalchemy.orm import Session, sessionmaker

from bearwatch.db import make_engine, session_factory
from bearwatch.migrations import alembic_config, upgrade_to_head
from bearwatch.schema import (
    Alert,
    AlertFlag,
    AlertStatus,
    Decision,
    FlagOutcome,
    Frame,
    FrameQueueEntry,
    FrameVotes,
    ModelVersion,
    Prediction,
    Role,
    Stage,
    StageChange,
    User,
    Verdict,
)
from ingest.partitions import SCHEMA, day_partitions, ensure_partitions, keep_partitions
from ingest.store import FrameStore
from ingest.sweeper import retain
from tests.ingest.helpers import camera, jpeg, make_camera, scene

NOW = datetime.now(timezone.utc).replace(microsecond=0)
TODAY = NOW.date()
OLD = TODAY - timedelta(days=40)  # two whole days, OLD and the day before, are past a 30-day retention


@pytest.fixture
def pg(pg_url: str) -> Iterator[tuple[sa.Engine, sessionmaker[Session]]]:
    engine = make_engine(pg_url)
    upgrade_to_head(engine)
    yield engine, session_factory(engine)
    engine.dispose()


def _partition_of(session: Session, table: str, row_id: int) -> str:
    return str(session.scalar(sa.text(f"SELECT tableoid::regclass::text FROM {table} WHERE id = :id"), {"id": row_id}))


def _day_tables(session: Session) -> int:
    """Day partitions of frames and predictions (pg_inherits)."""
    return session.scalar(sa.text(
        "SELECT count(*) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        f"WHERE i.inhparent IN ('{SCHEMA}.frames_stream'::regclass, '{SCHEMA}.predictions_stream'::regclass) "
        "AND c.relname NOT LIKE '%default'")) or 0


def _frame(factory: sessionmaker[Session], store: FrameStore, camera_id: int, at: datetime, model_id: int) -> int:
    site_id = camera(factory, camera_id).site_id
    stored = store.write(site_id, camera_id, at, jpeg(scene(int(at.timestamp()) % 1000)))
    with factory.begin() as session:
        frame = Frame(camera_id=camera_id, captured_at=at, path=stored.path, sha256=stored.sha256,
                      size_bytes=stored.size_bytes, width=320, height=240)
        session.add(frame)
        session.flush()
        session.add(Prediction(frame_id=frame.id, model_version_id=model_id, probabilities={"bear": 0.9},
                               positive_score=0.9, flagged=True))  # captured_at: the ORM reads the frame's
        return frame.id


def _model(factory: sessionmaker[Session]) -> int:
    with factory.begin() as session:
        model = ModelVersion(name="m", path="/m.pkl", sha256="0" * 64, classes=["bear"], positive_classes=["bear"])
        session.add(model)
        session.flush()
        return model.id


def _ranger(factory: sessionmaker[Session]) -> int:
    with factory.begin() as session:
        user = User(name="rita", role=Role.RANGER)
        session.add(user)
        session.flush()
        return user.id


def test_partitions_are_made_ahead_and_a_frame_lands_in_its_day(pg: tuple[sa.Engine, sessionmaker[Session]], tmp_path: Path) -> None:
    _, factory = pg
    with factory() as session:
        days = day_partitions(session)
    assert [TODAY + timedelta(n) for n in range(8)] == [d for d in days if d >= TODAY]  # the migration's 7 days ahead
    assert keep_partitions(factory, NOW) == 0  # idempotent: all there
    assert keep_partitions(factory, NOW + timedelta(days=3)) == 3
    store = FrameStore(tmp_path / "frames")
    frame_id = _frame(factory, store, make_camera(factory, "rtsp://cam/x"), NOW, _model(factory))
    with factory() as session:
        assert _partition_of(session, "frames", frame_id) == f"{SCHEMA}.frames_{TODAY:%Y%m%d}"
        prediction_id = session.scalar(sa.select(Prediction.id).where(Prediction.frame_id == frame_id))
        assert _partition_of(session, "predictions", prediction_id) == f"{SCHEMA}.predictions_{TODAY:%Y%m%d}"
        queued = session.get(FrameQueueEntry, frame_id)  # the queue's trigger still fires on the partitioned table
        assert queued is not None
        later = TODAY + timedelta(days=10)  # made by the job: its indexes named after the table's and the day
        indexes = set(session.scalars(sa.text(
            f"SELECT indexrelid::regclass::text FROM pg_index WHERE indrelid = '{SCHEMA}.predictions_{later:%Y%m%d}'::regclass")))
        assert f"{SCHEMA}.ix_predictions_flagged_id_{later:%Y%m%d}" in indexes, indexes


def _old_park(factory: sessionmaker[Session], store: FrameStore) -> dict[str, int]:
    """Frames on two old days (each day: plain ones, and one decided / alerted / in the
    ledger), with predictions, flags, queue entries; and one new frame."""
    assert ensure_partitions(factory, OLD - timedelta(1), days_ahead=1) == 2
    cam, model, ranger = make_camera(factory, "rtsp://cam/x"), _model(factory), _ranger(factory)
    site_id = camera(factory, cam).site_id
    ids: dict[str, int] = {}
    for day in (OLD - timedelta(1), OLD):
        start = datetime.combine(day, time(12), timezone.utc)
        for i in range(5):
            ids[f"plain{day:%d}-{i}"] = _frame(factory, store, cam, start + timedelta(minutes=i), model)
    ids["decided"] = _frame(factory, store, cam, datetime.combine(OLD, time(13), timezone.utc), model)
    ids["alerted"] = _frame(factory, store, cam, datetime.combine(OLD - timedelta(1), time(13), timezone.utc), model)
    ids["ledger"] = _frame(factory, store, cam, datetime.combine(OLD, time(14), timezone.utc), model)
    ids["new"] = _frame(factory, store, cam, NOW - timedelta(days=1), model)
    with factory.begin() as session:
        session.add(Decision(frame_id=ids["decided"], reviewer_id=ranger, verdict=Verdict.CONFIRM))
        alert = Alert(site_id=site_id, camera_id=cam, frame_id=ids["alerted"], stage=Stage.LIMITED,
                      status=AlertStatus.SENT, idempotency_key="k1")
        session.add(alert)
        session.add(StageChange(site_id=site_id, from_stage=Stage.MANUAL, to_stage=Stage.LIMITED, actor="ops",
                                reason="gate passed", evidence={"examples": {"frame_ids": [ids["ledger"]]}}))
        session.flush()
        for name in ("alerted", "plain" + f"{OLD:%d}-0"):  # a flag of evidence, and one of a plain frame
            prediction = session.scalar(sa.select(Prediction.id).where(Prediction.frame_id == ids[name]))
            session.add(AlertFlag(prediction_id=prediction, frame_id=ids[name], site_id=site_id, alert_id=alert.id,
                                  stage=Stage.LIMITED, outcome=FlagOutcome.MERGED))
    return ids


def test_retention_drops_old_days_whole_and_keeps_the_evidence(pg: tuple[sa.Engine, sessionmaker[Session]], tmp_path: Path) -> None:
    _, factory = pg
    store = FrameStore(tmp_path / "frames")
    ids = _old_park(factory, store)
    with factory() as session:
        paths = {r.id: r.path for r in session.execute(sa.select(Frame.id, Frame.path))}
        tables = _day_tables(session)
    report = retain(factory, store, days=30, now=NOW)
    assert (report.frames_deleted, report.kept_as_evidence) == (10, 3)
    evidence = {ids["decided"], ids["alerted"], ids["ledger"]}
    with factory() as session:
        assert _day_tables(session) == tables - 4  # two days, frames and predictions: dropped whole
        assert OLD not in day_partitions(session)
        left = {f.id: f for f in session.scalars(sa.select(Frame))}
        assert set(left) == evidence | {ids["new"]}
        for frame_id in evidence:  # same id, readable, in the kept partition with its prediction
            frame = session.get(Frame, frame_id)
            assert frame is not None and frame.kept and store.absolute(frame.path).is_file()
            assert _partition_of(session, "frames", frame_id) == f"{SCHEMA}.frames_kept"
            prediction = session.scalars(sa.select(Prediction).where(Prediction.frame_id == frame_id)).one()
            assert prediction.kept and _partition_of(session, "predictions", prediction.id) == f"{SCHEMA}.predictions_kept"
        # moving to the kept partition deleted nothing that refers to the frame
        assert session.scalars(sa.select(Decision.frame_id)).all() == [ids["decided"]]
        assert session.scalars(sa.select(FrameVotes.frame_id)).all() == [ids["decided"]]
        assert session.scalars(sa.select(Alert.frame_id)).all() == [ids["alerted"]]
        assert session.scalars(sa.select(AlertFlag.frame_id)).all() == [ids["alerted"]]  # the plain one's went
        # (unscored frames: the dropped ones left the queue, the kept ones stay in it)
        assert set(session.scalars(sa.select(FrameQueueEntry.frame_id))) == evidence | {ids["new"]}
        assert session.scalar(sa.select(sa.func.count()).select_from(Prediction)) == 4
    for frame_id, path in paths.items():
        assert store.absolute(path).is_file() == (frame_id in evidence or frame_id == ids["new"])
    again = retain(factory, store, days=30, now=NOW)
    assert (again.frames_deleted, again.kept_as_evidence) == (0, 3)


def test_a_verdict_during_the_drop_waits_and_leaves_no_orphan(pg: tuple[sa.Engine, sessionmaker[Session]], tmp_path: Path) -> None:
    engine, factory = pg
    store = FrameStore(tmp_path / "frames")
    ids = _old_park(factory, store)
    ranger = _ranger_id(factory)
    first, second = ids[f"plain{OLD:%d}-1"], ids[f"plain{OLD:%d}-2"]
    # A verdict in flight when retention starts: the drop waits for it, then keeps its frame.
    verdict = engine.connect()
    verdict.execute(sa.insert(Decision).values(frame_id=first, reviewer_id=ranger, verdict=Verdict.DISMISS))
    result: list[object] = []
    retention = threading.Thread(target=lambda: result.append(retain(factory, store, days=30, now=NOW)))
    retention.start()
    retention.join(timeout=2)
    assert retention.is_alive()  # waiting for the verdict's transaction
    verdict.commit()
    retention.join(timeout=60)
    assert result
    with factory() as session:
        frame = session.get(Frame, first)
        assert frame is not None and frame.kept and store.absolute(frame.path).is_file()
    # A verdict arriving while the day is being dropped waits, then fails clearly (its frame is gone).
    with engine.connect() as dropper:
        dropper.execute(sa.text("LOCK TABLE frames IN ACCESS EXCLUSIVE MODE"))
        dropper.execute(sa.text(f"DELETE FROM frames WHERE id = {second}"))  # as the drop: the row goes
        errors: list[BaseException] = []

        def late_verdict() -> None:
            try:
                with factory.begin() as session:
                    session.add(Decision(frame_id=second, reviewer_id=ranger, verdict=Verdict.CONFIRM))
            except BaseException as exc:  # noqa: BLE001 - kept for the assertion below
                errors.append(exc)

        late = threading.Thread(target=late_verdict)
        late.start()
        late.join(timeout=2)
        assert late.is_alive()
        dropper.commit()
        late.join(timeout=60)
    assert errors and isinstance(errors[0], sa.exc.IntegrityError) and "does not exist" in str(errors[0])
    with factory() as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(Decision).where(Decision.frame_id == second)) == 0


def _ranger_id(factory: sessionmaker[Session]) -> int:
    with factory() as session:
        return session.scalars(sa.select(User.id)).one()


def test_partitioned_tables_refuse_rows_without_their_frame(pg: tuple[sa.Engine, sessionmaker[Session]], tmp_path: Path) -> None:
    _, factory = pg
    store = FrameStore(tmp_path / "frames")
    frame_id = _frame(factory, store, make_camera(factory, "rtsp://cam/x"), NOW, _model(factory))
    model, ranger = _model_id(factory), _ranger(factory)
    with pytest.raises(sa.exc.IntegrityError, match="does not exist"), factory.begin() as session:
        session.add(Decision(frame_id=frame_id + 100, reviewer_id=ranger, verdict=Verdict.CONFIRM))
    with pytest.raises(sa.exc.IntegrityError, match="captured_at is not its capture time"), factory.begin() as session:
        session.add(Prediction(frame_id=frame_id, model_version_id=model, probabilities={}, positive_score=0.1,
                               flagged=False, captured_at=NOW - timedelta(days=1)))
    with factory.begin() as session:  # a frame deleted by hand takes what referred to it along, as the cascade did
        session.add(Decision(frame_id=frame_id, reviewer_id=ranger, verdict=Verdict.CONFIRM))
    with factory.begin() as session:
        session.execute(sa.delete(Frame).where(Frame.id == frame_id))
    with factory() as session:
        for table in (Prediction, Decision, FrameVotes, FrameQueueEntry):
            assert session.scalar(sa.select(sa.func.count()).select_from(table)) == 0, table


def _model_id(factory: sessionmaker[Session]) -> int:
    with factory() as session:
        return session.scalars(sa.select(ModelVersion.id)).one()


def _migrate(engine: sa.Engine, revision: str, down: bool = False) -> None:
    cfg = alembic_config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        (command.downgrade if down else command.upgrade)(cfg, revision)


def _rows(engine: sa.Engine) -> dict[str, list[tuple[object, ...]]]:
    with engine.connect() as conn:
        return {
            "frames": [tuple(r) for r in conn.execute(sa.text("SELECT id, camera_id, captured_at, path FROM frames ORDER BY id"))],
            "predictions": [tuple(r) for r in conn.execute(sa.text(
                "SELECT id, frame_id, model_version_id, positive_score FROM predictions ORDER BY id"))],
            "decisions": [tuple(r) for r in conn.execute(sa.text("SELECT id, frame_id, verdict FROM decisions ORDER BY id"))],
            "frame_queue": [tuple(r) for r in conn.execute(sa.text("SELECT frame_id FROM frame_queue ORDER BY frame_id"))],
        }


def test_the_migration_keeps_every_row_both_ways(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        _migrate(engine, "0018")
        day = datetime(2026, 7, 1, 12)  # stored naive UTC
        with engine.begin() as conn:
            conn.execute(sa.text("INSERT INTO sites (id, name, stage, stage_since, trial_scope, thresholds, timezone, created_at) "
                                 "VALUES (1, 'north', 'manual', :t, '{}', '{}', 'UTC', :t)"), {"t": day})
            conn.execute(sa.text("INSERT INTO cameras (id, site_id, name, source, interval_s, enabled, health, "
                                 "consecutive_failures, created_at) VALUES (1, 1, 'cam', 'x', 5, true, 'online', 0, :t)"),
                         {"t": day})
            conn.execute(sa.text("INSERT INTO model_versions (id, name, path, sha256, classes, positive_classes, threshold, "
                                 "role, created_at) VALUES (1, 'm', '/m', 'x', '[]', '[]', 0.5, 'rollout', :t)"), {"t": day})
            conn.execute(sa.text("INSERT INTO users (id, name, role, created_at, session_epoch, preferences) "
                                 "VALUES (1, 'rita', 'ranger', :t, 0, '{}')"), {"t": day})
            for i in range(1, 7):  # frames over three days, the last one pending
                conn.execute(sa.text(
                    "INSERT INTO frames (id, camera_id, captured_at, path, sha256, size_bytes, width, height, status) "
                    "VALUES (:i, 1, :t, :p, 'x', 1, 1, 1, :s)"),
                    {"i": i * 7, "t": day + timedelta(hours=20 * i), "p": f"{i}.jpg", "s": "pending" if i == 6 else "scored"})
                if i < 6:
                    conn.execute(sa.text(
                        "INSERT INTO predictions (id, frame_id, model_version_id, probabilities, positive_score, flagged, "
                        "scored_at) VALUES (:i, :f, 1, '{}', :s, false, :t)"), {"i": i * 3, "f": i * 7, "s": i / 10, "t": day})
            conn.execute(sa.text("INSERT INTO decisions (id, frame_id, reviewer_id, verdict, decided_at, design_derived) "
                                 "VALUES (5, 14, 1, 'confirm', :t, false)"), {"t": day})
        before = _rows(engine)
        assert len(before["frames"]) == 6 and len(before["predictions"]) == 5 and before["frame_queue"] == [(42,)]
        _migrate(engine, "0019")
        assert _rows(engine) == before
        with engine.connect() as conn:  # each prediction has its frame's capture time
            assert conn.execute(sa.text("SELECT count(*) FROM predictions p JOIN frames f ON f.id = p.frame_id "
                                        "WHERE p.captured_at = f.captured_at")).scalar() == 5
            if engine.dialect.name == "postgresql":  # the decided frame is evidence from the start
                assert conn.execute(sa.text("SELECT id FROM frames WHERE kept")).scalars().all() == [14]
                assert conn.execute(sa.text(f"SELECT count(*) FROM {SCHEMA}.frames_default")).scalar() == 0
        _migrate(engine, "0018", down=True)
        assert _rows(engine) == before
        _migrate(engine, "head")
        assert _rows(engine) == before
    finally:
        engine.dispose()
