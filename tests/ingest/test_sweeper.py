"""Sweeper and retention: orphans both ways, evidence kept and marked, old frames go."""

from __future__ import annotations

import os
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from bearwatch.schema import (
    Alert,
    AlertStatus,
    Decision,
    Frame,
    Prediction,
    Role,
    Stage,
    StageChange,
    User,
    Verdict,
)
from ingest import sweeper
from ingest.store import FrameStore
from ingest.sweeper import SweepCursor, retain, sweep
from tests.conftest import run_cli
from tests.ingest.helpers import camera, jpeg, make_camera, scene
from tests.partitions import fill_partition
from tests.statements import plan_nodes, rows_read, statements_sent

NOW = datetime.now(timezone.utc).replace(microsecond=0)  # the CLI uses the real clock


def _frame(factory: sessionmaker[Session], store: FrameStore, camera_id: int, at: datetime) -> int:
    site_id = camera(factory, camera_id).site_id
    stored = store.write(site_id, camera_id, at, jpeg(scene(int(at.timestamp()) % 1000)))
    with factory.begin() as session:
        frame = Frame(camera_id=camera_id, captured_at=at, path=stored.path, sha256=stored.sha256,
                      size_bytes=stored.size_bytes, width=320, height=240)
        session.add(frame)
        session.flush()
        return frame.id


def _park(factory: sessionmaker[Session], store: FrameStore) -> dict[str, int]:
    """Frames: 'old', 'old_decided', 'old_alerted', 'old_ledger' (40 days), 'new' (1 day)."""
    cam = make_camera(factory, "rtsp://cam/x")
    ids = {name: _frame(factory, store, cam, NOW - timedelta(days=40, minutes=i))
           for i, name in enumerate(["old", "old_decided", "old_alerted", "old_ledger"])}
    fill_partition(factory)  # PostgreSQL: the old frames' partition is full, and can go as a whole
    ids["new"] = _frame(factory, store, cam, NOW - timedelta(days=1))
    with factory.begin() as session:
        ranger = User(name="rita", role=Role.RANGER)
        session.add(ranger)
        session.flush()
        session.add(Decision(frame_id=ids["old_decided"], reviewer_id=ranger.id, verdict=Verdict.CONFIRM))
        site_id = camera(factory, cam).site_id
        session.add(Alert(site_id=site_id, camera_id=cam, frame_id=ids["old_alerted"], stage=Stage.LIMITED,
                          status=AlertStatus.SENT, idempotency_key="k1"))
        session.add(StageChange(site_id=site_id, from_stage=Stage.MANUAL, to_stage=Stage.LIMITED, actor="ops",
                                reason="gate passed", evidence={"examples": {"frame_ids": [ids["old_ledger"]]}}))
        session.add(Prediction(frame_id=ids["old"], model_version_id=_model(session), probabilities={"bear": 0.1},
                               positive_score=0.1, flagged=False))
    return ids


def _model(session: Session) -> int:
    from bearwatch.schema import ModelVersion

    model = ModelVersion(name="m", path="/m.pkl", sha256="0" * 64, classes=["bear"], positive_classes=["bear"])
    session.add(model)
    session.flush()
    return model.id


def _paths(factory: sessionmaker[Session]) -> dict[int, str]:
    with factory() as session:
        return dict(session.execute(sa.select(Frame.id, Frame.path)).all())


def test_retention_deletes_old_frames_but_keeps_evidence(factory: sessionmaker[Session], tmp_path: Path) -> None:
    store = FrameStore(tmp_path / "frames")
    ids = _park(factory, store)
    paths = _paths(factory)
    report = retain(factory, store, days=30, now=NOW)
    assert (report.frames_deleted, report.kept_as_evidence) == (1, 3)
    left = _paths(factory)
    assert set(left) == {ids["old_decided"], ids["old_alerted"], ids["old_ledger"], ids["new"]}
    assert not store.absolute(paths[ids["old"]]).exists()
    assert all(store.absolute(p).is_file() for p in left.values())
    with factory() as session:  # the deleted frame's predictions went with it
        assert session.scalar(sa.select(sa.func.count()).select_from(Prediction)) == 0
    assert retain(factory, store, days=30, now=NOW).frames_deleted == 0


def test_sweep_removes_orphans_both_ways_and_marks_evidence_without_file(
    factory: sessionmaker[Session], tmp_path: Path
) -> None:
    store = FrameStore(tmp_path / "frames")
    ids = _park(factory, store)
    paths = _paths(factory)
    for name in ("old", "old_decided", "old_ledger"):  # files lost (disk trouble, a manual rm)
        store.absolute(paths[ids[name]]).unlink()
    stray = store.absolute("site-1/camera-1/2026-07-01/stray.jpg")
    stray.parent.mkdir(parents=True, exist_ok=True)
    stray.write_bytes(b"\xff\xd8 no row")
    young = store.absolute("site-1/camera-1/2026-07-01/being-committed.jpg")
    young.write_bytes(b"\xff\xd8 row not committed yet")
    hour_ago = time.time() - 3600
    os.utime(stray, (hour_ago, hour_ago))
    report = sweep(factory, store, now=NOW, grace_s=600)
    assert (report.files_removed, report.rows_removed, report.rows_marked) == (1, 1, 2)
    assert not stray.exists() and young.exists()  # a young file may be a commit in flight
    with factory() as session:
        rows = {f.id: f for f in session.scalars(sa.select(Frame))}
    assert ids["old"] not in rows
    assert rows[ids["old_decided"]].file_missing_at == NOW and rows[ids["old_ledger"]].file_missing_at == NOW
    assert rows[ids["new"]].file_missing_at is None and rows[ids["old_alerted"]].file_missing_at is None
    again = sweep(factory, store, now=NOW + timedelta(hours=1), grace_s=600)
    assert (again.rows_removed, again.rows_marked) == (0, 0)


def test_frames_cli(database_url: str, tmp_path: Path, data_env: dict[str, str]) -> None:
    from bearwatch.db import make_engine, session_factory
    from bearwatch.migrations import upgrade_to_head

    engine = make_engine(database_url)
    upgrade_to_head(engine)
    factory = session_factory(engine)
    store = FrameStore(Path(data_env["BEARWATCH_DATA_DIR"]) / "frames")
    _park(factory, store)
    result = run_cli("frames", "retain", "--days", "30")
    assert result.returncode == 0, result.stderr
    assert "deleted 1 frames older than 30 days; kept 3 as evidence" in result.stdout
    result = run_cli("frames", "sweep")
    assert result.returncode == 0, result.stderr
    assert "removed 0 files without rows, 0 rows without files" in result.stdout
    engine.dispose()


def test_the_rolling_sweep_checks_a_bounded_share_per_pass_and_covers_the_store_in_turn(
    factory: sessionmaker[Session], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = FrameStore(tmp_path / "frames")
    cam = make_camera(factory, "rtsp://cam/x")
    days = [NOW - timedelta(days=d) for d in (3, 2, 1)]  # three camera-day folders, two frames each
    ids = [_frame(factory, store, cam, day + timedelta(minutes=m)) for day in days for m in (0, 1)]
    paths = _paths(factory)
    with factory.begin() as session:
        ranger = User(name="rita", role=Role.RANGER)
        session.add(ranger)
        session.flush()
        session.add(Decision(frame_id=ids[5], reviewer_id=ranger.id, verdict=Verdict.CONFIRM))
    for frame_id in (ids[1], ids[5]):  # files lost: one frame nobody refers to, one a decision does
        store.absolute(paths[frame_id]).unlink()
    strays = [store.absolute(paths[ids[i]]).with_name("stray.jpg") for i in (0, 2)]  # day 1 and day 2 folders
    hour_ago = time.time() - 3600
    for stray in strays:
        stray.write_bytes(b"\xff\xd8 no row")
        os.utime(stray, (hour_ago, hour_ago))
    monkeypatch.setattr(sweeper, "ROWS_PER_PASS", 2)
    monkeypatch.setattr(sweeper, "FILES_PER_PASS", 1)  # one camera-day folder a pass
    cursor = SweepCursor()

    first = sweep(factory, store, now=NOW, grace_s=600, cursor=cursor)
    # rows 1-2 and the first day's folder only: the later day's stray and the evidence row wait
    assert (first.rows_removed, first.rows_marked, first.files_removed) == (1, 0, 1)
    assert not strays[0].exists() and strays[1].exists()
    reports, rows_round, folders_round = [first], False, False
    while not (rows_round and folders_round):  # each part starts over after its last
        reports.append(sweep(factory, store, now=NOW, grace_s=600, cursor=cursor))
        rows_round, folders_round = rows_round or not cursor.after_frame_id, folders_round or not cursor.after_folder
        assert len(reports) < 10, "the cursor never came round"
    assert len(reports) == 4, "6 rows at 2 a pass, then the end; 3 folders at 1 a pass"
    assert sum(r.files_removed for r in reports) == 2 and sum(r.rows_removed for r in reports) == 1
    assert sum(r.rows_marked for r in reports) == 1
    assert not strays[1].exists()
    with factory() as session:
        rows = {f.id: f for f in session.scalars(sa.select(Frame))}
    assert ids[1] not in rows and rows[ids[5]].file_missing_at == NOW
    assert all(rows[i].file_missing_at is None for i in (ids[0], ids[2], ids[3], ids[4]))
    # round again: nothing left to do, and a whole sweep agrees
    again = sweep(factory, store, now=NOW, grace_s=600, cursor=cursor)
    assert (again.files_removed, again.rows_removed, again.rows_marked) == (0, 0, 0)
    assert sweep(factory, store, now=NOW, grace_s=600) == again


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)  # EXPLAIN ANALYZE's row counts
def test_a_folder_s_files_are_looked_up_among_its_camera_day_rows_only(
    engine: sa.Engine, factory: sessionmaker[Session], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = FrameStore(tmp_path / "frames")
    cam = make_camera(factory, "rtsp://cam/x")
    other = make_camera(factory, "rtsp://cam/y", name="other")
    mine = [_frame(factory, store, cam, NOW - timedelta(days=3, minutes=m)) for m in range(3)]
    with factory.begin() as session:  # another camera's history, rows only: what a scan would read
        session.add_all(Frame(camera_id=other, captured_at=NOW - timedelta(days=d, seconds=s), path=f"elsewhere/{d}-{s}.jpg",
                              sha256="0" * 64, size_bytes=1, width=1, height=1)
                        for d in range(1, 6) for s in range(400))
    hour_ago = time.time() - 3600
    for path in _paths(factory).values():
        if store.absolute(path).exists():
            os.utime(store.absolute(path), (hour_ago, hour_ago))
    monkeypatch.setattr(sweeper, "ROWS_PER_PASS", 1)
    monkeypatch.setattr(sweeper, "FILES_PER_PASS", 1)
    with statements_sent(engine) as sent:
        report = sweep(factory, store, now=NOW, grace_s=600, cursor=SweepCursor())
    assert report == sweeper.SweepReport(0, 0, 0)  # every file has its row
    (lookup,) = [s for s in sent if s.reads and s.sql.lstrip().startswith("SELECT frames.path")]
    assert rows_read(plan_nodes(engine, lookup), ["frames"]) <= len(mine), "the folder's camera-day rows, not 2,000"
