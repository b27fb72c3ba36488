"""PostgreSQL's partitioned frames and predictions (migration 0022, bearwatch.partitions):
the upgrade keeps every row, retention drops whole partitions but never evidence, and
partitions are made ahead."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
from pytest_alembic import MigrationContext
from pytest_alembic.tests import test_model_definitions_match_ddl as model_definitions_match_ddl
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from bearwatch.auth import Actor
from bearwatch.db import make_engine, session_factory
from bearwatch.migrations import upgrade_to_head
from bearwatch.partitions import (
    OPT_IN,
    at_least,
    ensure_partitions,
    forget_readings,
    frame_id_floor,
    next_frame_id,
    stream_partitions,
)
from bearwatch.schema import (
    Alert,
    AlertFlag,
    AlertStatus,
    Camera,
    Decision,
    FlagOutcome,
    Frame,
    FrameQueueEntry,
    FrameStatus,
    FrameVotes,
    ModelVersion,
    Prediction,
    PredictionHeatmap,
    Role,
    Site,
    Stage,
    StageChange,
    User,
    Verdict,
)
from inference.queue import ModelScores, claim_batch, commit_results
from ingest.store import FrameStore
from ingest.sweeper import retain
from shadow.camera_hours import clear_hours_cache, site_hours
from shadow.closed_spans import FrameKey
from shadow.review_queue import review_queue
from tests.conftest import _fresh_pg_database
from tests.partitions import fill_partition
from tests.statements import plan_nodes, statements_sent


@pytest.fixture(scope="module")
def partitioned_template() -> Iterator[str]:
    """A PostgreSQL database migrated to head with the partitioned layout (asked for with
    OPT_IN, as an operator would), copied for each test."""
    with _fresh_pg_database() as url, pytest.MonkeyPatch.context() as patch:
        patch.setenv(OPT_IN, "1")
        engine = make_engine(url)
        upgrade_to_head(engine)
        engine.dispose()
        yield make_url(url).database or ""


@pytest.fixture
def factory(partitioned_template: str) -> Iterator[sessionmaker[Session]]:
    with _fresh_pg_database(partitioned_template) as url:
        engine = make_engine(url)
        yield session_factory(engine)
        engine.dispose()

NOW = datetime(2026, 7, 20, 12, 0, tzinfo=timezone.utc)


def _park(factory: sessionmaker[Session]) -> tuple[int, int, int, int]:
    """(site, camera, model, ranger) ids."""
    with factory.begin() as session:
        site = Site(name="north")
        session.add(site)
        session.flush()
        camera = Camera(site_id=site.id, name="c", source="x.avi")
        model = ModelVersion(name="m", path="m.pkl", sha256="0" * 64, classes=["bear", "empty"], positive_classes=["bear"])
        ranger = User(name="rita", role=Role.RANGER)
        session.add_all([camera, model, ranger])
        session.flush()
        return site.id, camera.id, model.id, ranger.id


def _frame(factory: sessionmaker[Session], store: FrameStore | None, site_id: int, camera_id: int, at: datetime,
           model_id: int | None = None, score: float = 0.1, status: FrameStatus = FrameStatus.SCORED,
           frame_id: int | None = None) -> int:
    path = f"site-{site_id}/camera-{camera_id}/{at:%Y-%m-%d}/{at:%H%M%S_%f}.jpg"
    if store is not None:
        store.absolute(path).parent.mkdir(parents=True, exist_ok=True)
        store.absolute(path).write_bytes(b"\xff\xd8 jpeg")
    with factory.begin() as session:
        frame = Frame(id=frame_id, camera_id=camera_id, captured_at=at, path=path, sha256="0" * 64, size_bytes=1, width=1,
                      height=1, status=status)
        session.add(frame)
        session.flush()
        if model_id is not None:
            session.add(Prediction(frame_id=frame.id, model_version_id=model_id, probabilities={"bear": score},
                                   positive_score=score, flagged=score >= 0.5))
        return frame.id


def _decided_frame(factory: sessionmaker[Session], store: FrameStore, at: datetime) -> tuple[int, int, int, int, int]:
    """A park with a flagged frame captured ``at`` that a ranger confirmed: (site, camera,
    model, ranger, frame) ids."""
    site_id, camera_id, model_id, ranger_id = _park(factory)
    frame_id = _frame(factory, store, site_id, camera_id, at, model_id, score=0.9)
    with factory.begin() as session:
        session.add(Decision(frame_id=frame_id, reviewer_id=ranger_id, verdict=Verdict.CONFIRM))
    return site_id, camera_id, model_id, ranger_id, frame_id


def _flag(factory: sessionmaker[Session], frame_id: int, site_id: int) -> int:
    """The frame's prediction handled by the alert processor, with a heatmap."""
    with factory.begin() as session:
        prediction_id = session.scalars(sa.select(Prediction.id).where(Prediction.frame_id == frame_id)).one()
        session.add(AlertFlag(prediction_id=prediction_id, frame_id=frame_id, site_id=site_id, stage=Stage.MANUAL,
                              outcome=FlagOutcome.NO_ALERT))
        session.add(PredictionHeatmap(prediction_id=prediction_id, method="grad-cam", grid_rows=1, grid_cols=1, cells=b"\x01"))
        return prediction_id


def _relations(factory: sessionmaker[Session], like: str) -> set[str]:
    with factory() as session:
        return set(session.scalars(sa.text("SELECT relname FROM pg_class WHERE relname LIKE :p AND relkind IN ('r', 'p')"),
                                   {"p": like}))


def _count(factory: sessionmaker[Session], sql: str, **params: object) -> int:
    with factory() as session:
        return int(session.scalar(sa.text(sql), params) or 0)


def test_retention_drops_a_whole_partition_and_moves_its_evidence_to_the_kept_one(
    factory: sessionmaker[Session], tmp_path: Path
) -> None:
    store = FrameStore(tmp_path / "frames")
    site_id, camera_id, model_id, ranger_id = _park(factory)
    old = NOW - timedelta(days=40)
    ids = {name: _frame(factory, store, site_id, camera_id, old + timedelta(minutes=k), model_id, score=0.9)
           for k, name in enumerate(["plain", "decided", "alerted", "ledger"])}
    ids["pending"] = _frame(factory, store, site_id, camera_id, old + timedelta(minutes=9), status=FrameStatus.PENDING)
    flag = _flag(factory, ids["plain"], site_id)
    kept_flag = _flag(factory, ids["decided"], site_id)
    with factory.begin() as session:
        session.add(Decision(frame_id=ids["decided"], reviewer_id=ranger_id, verdict=Verdict.CONFIRM))
        session.add(Alert(site_id=site_id, camera_id=camera_id, frame_id=ids["alerted"], stage=Stage.LIMITED,
                          status=AlertStatus.SENT, idempotency_key="k1"))
        session.add(StageChange(site_id=site_id, from_stage=Stage.MANUAL, to_stage=Stage.LIMITED, actor="ops",
                                reason="gate passed", evidence={"examples": {"frame_ids": [ids["ledger"]]}}))
    fill_partition(factory)  # a partition's frames later
    ids["new"] = _frame(factory, store, site_id, camera_id, NOW - timedelta(days=1), model_id)
    with factory() as session:
        paths = {i: p for i, p in session.execute(sa.select(Frame.id, Frame.path))}
    assert _relations(factory, "frames_p1") == {"frames_p1"}

    report = retain(factory, store, days=30, now=NOW)

    assert (report.frames_deleted, report.kept_as_evidence) == (2, 3)
    assert _relations(factory, "%_p1") == set()  # frames_p1 and predictions_p1 dropped, not emptied row by row
    evidence = {ids["decided"], ids["alerted"], ids["ledger"]}
    with factory() as session:
        assert set(session.scalars(sa.text("SELECT id FROM frames_kept"))) == evidence
        assert set(session.scalars(sa.text("SELECT frame_id FROM predictions_kept"))) == evidence
        assert set(session.scalars(sa.select(Frame.id))) == evidence | {ids["new"]}
        # the evidence reads as before, by id, with its verdict, alert, votes and flag
        decided = session.get(Frame, ids["decided"])
        assert decided is not None and decided.predictions[0].positive_score == 0.9
        assert session.scalars(sa.select(Decision.frame_id)).all() == [ids["decided"]]
        assert session.scalars(sa.select(FrameVotes.frame_id)).all() == [ids["decided"]]
        assert session.scalars(sa.select(Alert.frame_id)).all() == [ids["alerted"]]
        assert session.scalars(sa.select(AlertFlag.prediction_id)).all() == [kept_flag]
        assert session.scalars(sa.select(PredictionHeatmap.prediction_id)).all() == [kept_flag]
        assert session.scalars(sa.select(FrameQueueEntry.frame_id)).all() == []
    assert flag != kept_flag
    for name, frame_id in ids.items():
        assert store.absolute(paths[frame_id]).exists() == (frame_id in evidence or name == "new"), name
    assert retain(factory, store, days=30, now=NOW).frames_deleted == 0


def test_a_kept_frame_takes_a_new_verdict_and_a_new_model_s_prediction(factory: sessionmaker[Session], tmp_path: Path) -> None:
    store = FrameStore(tmp_path / "frames")
    site_id, camera_id, model_id, ranger_id, frame_id = _decided_frame(factory, store, NOW - timedelta(days=40))
    with factory.begin() as session:
        second = User(name="sam", role=Role.RANGER)
        challenger = ModelVersion(name="c", path="c.pkl", sha256="1" * 64, classes=["bear", "empty"], positive_classes=["bear"])
        session.add_all([second, challenger])
        session.flush()
        second_id, challenger_id = second.id, challenger.id
    fill_partition(factory)
    retain(factory, store, days=30, now=NOW)
    assert _count(factory, "SELECT count(*) FROM frames_kept WHERE id = :i", i=frame_id) == 1

    with factory.begin() as session:  # a second look, months later (its key needs the frame's kept)
        session.add(Decision(frame_id=frame_id, reviewer_id=second_id, verdict=Verdict.DISMISS))
        session.get(Frame, frame_id).status = FrameStatus.PENDING  # type: ignore[union-attr]  # scored again
    claim = claim_batch(factory, 8, lease_s=60)
    assert [(f.frame_id, f.kept) for f in claim.frames] == [(frame_id, True)]
    scores = ModelScores(challenger_id, ("bear", "empty"), np.array([frame_id], np.int64), np.float32([[0.7, 0.3]]),
                         np.array([0.7]), np.array([True]))
    assert commit_results(factory, claim, [scores], {}, max_attempts=3) == 1
    with factory() as session:
        assert _count(factory, "SELECT count(*) FROM predictions_kept WHERE frame_id = :i", i=frame_id) == 2
        votes = session.get(FrameVotes, frame_id)
        assert votes is not None and (votes.votes, votes.bears) == (2, 1)


def test_a_partition_a_verdict_refers_to_cannot_be_detached(factory: sessionmaker[Session]) -> None:
    """The safety net under retention: the key, not only its bookkeeping, keeps evidence."""
    site_id, camera_id, model_id, ranger_id = _park(factory)
    frame_id = _frame(factory, None, site_id, camera_id, NOW, model_id)
    with factory.begin() as session:
        session.add(Decision(frame_id=frame_id, reviewer_id=ranger_id, verdict=Verdict.CONFIRM))
    with pytest.raises(sa.exc.IntegrityError, match="violates foreign key constraint"), factory.begin() as session:
        session.execute(sa.text("ALTER TABLE frames_stream DETACH PARTITION frames_p1"))


def test_deleting_a_frame_or_a_prediction_deletes_what_hangs_on_it(factory: sessionmaker[Session]) -> None:
    """predictions, flags and heatmaps have no key to frames (a detach would read the
    whole partition for it): triggers do what ON DELETE CASCADE did (the sweeper, a
    camera removed)."""
    site_id, camera_id, model_id, _ranger = _park(factory)
    first = _frame(factory, None, site_id, camera_id, NOW, model_id, score=0.9)
    second = _frame(factory, None, site_id, camera_id, NOW + timedelta(seconds=5), model_id, score=0.9)
    _flag(factory, first, site_id)
    second_prediction = _flag(factory, second, site_id)
    with factory.begin() as session:
        session.execute(sa.delete(Frame).where(Frame.id == first))
        session.execute(sa.delete(Prediction).where(Prediction.id == second_prediction))
    for table in ("predictions", "alert_flags", "prediction_heatmaps"):
        assert _count(factory, f"SELECT count(*) FROM {table}") == 0, table
    with pytest.raises(sa.exc.IntegrityError, match="cannot change"), factory.begin() as session:
        session.execute(sa.update(Frame).where(Frame.id == second).values(id=10**9))  # as the keys refused it
    with factory.begin() as session:
        session.execute(sa.delete(Camera).where(Camera.id == camera_id))
    assert _count(factory, "SELECT count(*) FROM frames") == 0


def test_partitions_are_made_ahead_each_about_a_week_of_frames(factory: sessionmaker[Session]) -> None:
    site_id, camera_id, _model, _ranger = _park(factory)
    for hour in (0, 12):  # the first partition filled in 12 hours
        _frame(factory, None, site_id, camera_id, NOW + timedelta(hours=hour))
    fill_partition(factory)  # the migration made the first and two ahead
    with factory() as session:
        before = stream_partitions(session)
    assert ensure_partitions(factory) == 0  # one is ready above the next frame id
    fill_partition(factory)
    assert ensure_partitions(factory) == 1
    with factory() as session:
        after = stream_partitions(session)
        indexes = set(session.scalars(sa.text(
            "SELECT indexrelid::regclass::text FROM pg_index WHERE indrelid IN ('frames_p3'::regclass, 'predictions_p3'::regclass)")))
    span = before[1].high - before[1].low
    assert [(p.number, p.low, p.high) for p in after][-1] == (3, before[-1].high, before[-1].high + 2 * 7 * span)
    assert {"ix_frames_captured_at_p3", "uq_frames_camera_id_captured_at_p3", "ix_predictions_flagged_id_p3",
            "pk_frames_p3"} <= indexes
    assert ensure_partitions(factory) == 0

    # A frame no range holds (an id given by hand) waits in the default partition, and
    # the next ranges start above it.
    _frame(factory, None, site_id, camera_id, NOW + timedelta(hours=13), frame_id=10_000_000)
    with factory.begin() as session:
        session.execute(sa.text("SELECT setval('frames_id_seq', :v, false)"), {"v": after[-1].high})
    assert _count(factory, "SELECT count(*) FROM frames_stream_default") == 1
    assert ensure_partitions(factory) == 1
    with factory() as session:
        assert stream_partitions(session)[-1].low == 10000001


def test_each_stream_partition_refuses_a_second_frame_of_a_camera_at_one_time(factory: sessionmaker[Session]) -> None:
    site_id, camera_id, _model, _ranger = _park(factory)
    _frame(factory, None, site_id, camera_id, NOW)
    with pytest.raises(sa.exc.IntegrityError):
        _frame(factory, None, site_id, camera_id, NOW)


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_the_upgrade_keeps_every_row_and_the_downgrade_too(
    alembic_runner: MigrationContext, alembic_engine: sa.Engine, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """pytest-alembic's runner on PostgreSQL: a park's rows at 0021, the upgrade, the downgrade."""
    monkeypatch.setenv(OPT_IN, "1")
    alembic_runner.migrate_up_to("0021")
    engine = alembic_engine
    factory = session_factory(engine)
    site_id, camera_id, model_id, ranger_id = _park(factory)
    ids = [_frame(factory, None, site_id, camera_id, NOW + timedelta(seconds=5 * k), model_id, score=0.2 + 0.2 * k)
           for k in range(4)]
    pending = _frame(factory, None, site_id, camera_id, NOW + timedelta(minutes=5), status=FrameStatus.PENDING)
    flag = _flag(factory, ids[3], site_id)
    with factory.begin() as session:
        session.add(Decision(frame_id=ids[3], reviewer_id=ranger_id, verdict=Verdict.CONFIRM))
        session.add(Alert(site_id=site_id, camera_id=camera_id, frame_id=ids[3], stage=Stage.LIMITED,
                          status=AlertStatus.SENT, idempotency_key="k1"))

    def contents() -> dict[str, list[tuple[object, ...]]]:
        with factory() as session:
            return {table: [tuple(r) for r in session.execute(sa.text(f"SELECT {columns} FROM {table} ORDER BY 1"))]
                    for table, columns in {
                        "frames": "id, camera_id, captured_at, path, status", "predictions": "id, frame_id, positive_score",
                        "decisions": "frame_id, verdict", "alerts": "frame_id", "alert_flags": "prediction_id",
                        "prediction_heatmaps": "prediction_id", "frame_votes": "frame_id, votes",
                        "frame_queue": "frame_id"}.items()}

    before = contents()
    assert before["frame_queue"] == [(pending,)] and before["alert_flags"] == [(flag,)]
    alembic_runner.migrate_up_one()
    engine.dispose()
    assert contents() == before
    assert _count(factory, "SELECT count(*) FROM frames_p0") == 5  # the old table, attached as it was
    with factory() as session:
        assert next_frame_id(session) == pending + 1
        assert [p.low for p in stream_partitions(session)][1] == pending + 1
    newer = _frame(factory, None, site_id, camera_id, NOW + timedelta(minutes=6), model_id)
    assert _count(factory, "SELECT count(*) FROM frames_p1 WHERE id = :i", i=newer) == 1
    with pytest.raises(sa.exc.IntegrityError), factory.begin() as session:  # the key to frames holds
        session.add(Decision(frame_id=10**9, reviewer_id=ranger_id, verdict=Verdict.CONFIRM))

    after = contents()
    alembic_runner.migrate_down_one()
    engine.dispose()
    assert contents() == after
    assert _relations(factory, "frames%") == {"frames"}
    monkeypatch.delenv(OPT_IN)
    alembic_runner.migrate_up_one()  # not asked for: the tables stay plain
    assert _relations(factory, "frames%") == {"frames"}
    with factory() as session:
        assert session.scalar(sa.text("SELECT relkind FROM pg_class WHERE relname = 'frames'")) == "r"


def test_retention_deletes_the_default_partition_s_old_frames_one_by_one(factory: sessionmaker[Session], tmp_path: Path) -> None:
    store = FrameStore(tmp_path / "frames")
    site_id, camera_id, model_id, _ranger = _park(factory)
    _frame(factory, store, site_id, camera_id, NOW - timedelta(days=40), model_id, frame_id=10_000_000)  # no range holds it
    young = _frame(factory, store, site_id, camera_id, NOW - timedelta(days=40, seconds=-5), model_id)
    assert _count(factory, "SELECT count(*) FROM frames_stream_default") == 1
    report = retain(factory, store, days=30, now=NOW)
    assert report.frames_deleted == 1  # the range of the other is not full yet: it stays, whole
    with factory() as session:
        assert set(session.scalars(sa.select(Frame.id))) == {young}
    assert _count(factory, "SELECT count(*) FROM predictions") == 1


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_the_partitioned_layout_matches_the_models_but_for_its_own_objects(
    alembic_runner: MigrationContext, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """pytest-alembic's model check on the partitioned layout (the plain one runs in
    tests/bearwatch/test_migrations.py): alembic/env.py leaves out only the layout's own
    columns, keys and partitions (bearwatch.partitions.layout_object)."""
    monkeypatch.setenv(OPT_IN, "1")
    model_definitions_match_ddl(alembic_runner)


def _plan_and_hours(factory: sessionmaker[Session], site_id: int, start: datetime, end: datetime) -> tuple[str, list[FrameKey]]:
    """The site's camera-hours of [start, end) as the guard reads its open hours from the
    frames, and the tables the plan of the statement that read them scans."""
    engine = factory.kw["bind"]
    with statements_sent(engine) as sent, factory() as session:
        site = session.get(Site, site_id)
        assert site is not None
        clear_hours_cache()
        hours = site_hours(session, site, start, end)
    (read,) = [statement for statement in sent if "GROUP BY" in statement.sql]
    return " ".join(node.get("Relation Name", "") for node in plan_nodes(engine, read)), sorted(hours)


def test_a_window_s_read_leaves_older_partitions_out_of_its_plan_and_misses_no_frame(factory: sessionmaker[Session]) -> None:
    site_id, camera_id, model_id, _ranger = _park(factory)
    with factory.begin() as session:
        other = Camera(site_id=site_id, name="d", source="y.avi")
        session.add(other)
        session.flush()
        other_id = other.id
        session.get(Site, site_id).rollout_model_id = model_id  # type: ignore[union-attr]
    hour = NOW.replace(minute=0)
    _frame(factory, None, site_id, camera_id, NOW - timedelta(days=10), model_id)  # in frames_p1 with ...
    skewed = _frame(factory, None, site_id, other_id, hour + timedelta(minutes=5), model_id, score=0.9)  # ... a frame of now
    fill_partition(factory)
    young = _frame(factory, None, site_id, camera_id, hour + timedelta(minutes=10), model_id, score=0.9)  # frames_p2
    forget_readings()

    plan, hours = _plan_and_hours(factory, site_id, hour, hour + timedelta(hours=1))
    assert hours == sorted([(camera_id, hour, False), (other_id, hour, False)])  # the skewed frame's hour too
    assert "frames_p1" in plan

    with factory.begin() as session:  # the skewed frame gone: frames_p1 holds nothing of the window
        session.execute(sa.delete(Prediction).where(Prediction.frame_id == skewed))
        session.execute(sa.delete(Frame).where(Frame.id == skewed))
    forget_readings()
    plan, hours = _plan_and_hours(factory, site_id, hour, hour + timedelta(hours=1))
    assert hours == [(camera_id, hour, False)]
    assert "frames_p1" not in plan and "frames_p2" in plan
    with factory() as session:  # the review queue's window, its flagged frame and no other
        queue = review_queue(session, Actor("rita", Role.RANGER), NOW)
    assert [item.frame_id for item in queue] == [young]


def test_no_floor_for_a_window_that_reaches_kept_evidence(factory: sessionmaker[Session], tmp_path: Path) -> None:
    store = FrameStore(tmp_path / "frames")
    site_id, camera_id, model_id, _ranger, _decided = _decided_frame(factory, store, NOW - timedelta(days=40))
    fill_partition(factory)
    assert retain(factory, store, days=30, now=NOW).kept_as_evidence == 1  # frames_p1 dropped, the decided frame kept
    _frame(factory, store, site_id, camera_id, NOW - timedelta(days=50), model_id)  # old footage backfilled: frames_p2
    fill_partition(factory)
    _frame(factory, store, site_id, camera_id, NOW - timedelta(days=1), model_id)
    forget_readings()
    with factory() as session:
        since = NOW - timedelta(days=41)  # frames_p2 holds nothing of it; the kept frame, below it, does
        assert frame_id_floor(session, since) is None
        assert frame_id_floor(session, NOW - timedelta(days=2)) is not None
        assert session.scalar(sa.select(sa.func.count()).where(
            Frame.captured_at >= since, *at_least(frame_id_floor(session, since), Frame.id))) == 2


def test_a_window_s_frame_waiting_in_the_default_partition_is_read(factory: sessionmaker[Session]) -> None:
    site_id, camera_id, model_id, _ranger = _park(factory)
    with factory.begin() as session:
        session.get(Site, site_id).rollout_model_id = model_id  # type: ignore[union-attr]
    _frame(factory, None, site_id, camera_id, NOW - timedelta(days=10), model_id)
    with factory.begin() as session:  # the sequence ran past the ranges (the hourly job was off)
        top = stream_partitions(session)[-1]
        session.execute(sa.text("SELECT setval('frames_id_seq', :v, false)"), {"v": top.high})
    waiting = _frame(factory, None, site_id, camera_id, NOW - timedelta(minutes=5), model_id, score=0.9)
    assert ensure_partitions(factory) == 1  # above it: it stays in the default partition, between the ranges
    fill_partition(factory)
    forget_readings()
    with factory() as session:
        assert waiting >= (frame_id_floor(session, NOW - timedelta(hours=1)) or 0)
        queue = review_queue(session, Actor("rita", Role.RANGER), NOW)
    assert [item.frame_id for item in queue] == [waiting]
