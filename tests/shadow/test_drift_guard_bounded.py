"""Per-pass work that does not grow with history (issue 13 items 1 and 2), on SQLite and
PostgreSQL: drift reads a bounded, seeded, day/night-stratified sample whatever the length
of the manual period; the loop's drift pass runs the same statements for 1 site as for 4;
the guard hashes a model file again only when it changed, and never inside its write
transaction."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa
from sqlalchemy.orm import ORMExecuteState, Session, sessionmaker

from bearwatch import db
from bearwatch.demo.simulate import SimSpec, create_site
from bearwatch.park_file import Thresholds
from bearwatch.partitions import is_partitioned
from bearwatch.schema import Camera, DriftEvent, Frame, FrameStatus, Prediction, Site, Stage, StageChange
from shadow import drift, guard
from shadow.loop import run_drift_checks
from shadow.rollout import record_stage_change
from tests.shadow.scenario import SMALL
from tests.statements import sql_sent

NOW = datetime.fromisoformat("2026-06-20T00:00:00+00:00")
DAY = timedelta(days=1)
EMBEDDING_DIMS = 512  # as the worker stores them: 512 float16, 1 KB a frame
KS_SAMPLE, MMD_SAMPLE = 2000, 300  # per window (shadow.drift.SAMPLE_FRAMES, SAMPLE_EMBEDDINGS)


def _fill(session: Session, site: Site, start: datetime, end: datetime, every: timedelta, seed: int) -> int:
    """Frames of every camera of ``site`` in [start, end), one per ``every``, each scored by
    the rollout model with a 1 KB embedding; bulk inserted. Returns the frames."""
    rng = np.random.default_rng(seed)
    cameras = list(session.scalars(sa.select(Camera.id).where(Camera.site_id == site.id).order_by(Camera.id)))
    first = (session.scalar(sa.select(sa.func.max(Frame.id))) or 0) + 1
    slots = [start + i * every for i in range(int((end - start) / every))]
    frames: list[dict[str, Any]] = []
    predictions: list[dict[str, Any]] = []
    for i, (at, camera_id) in enumerate((at, c) for at in slots for c in cameras):
        night = at.hour < 6 or at.hour >= 20
        score = float(rng.random())
        frames.append({"id": first + i, "camera_id": camera_id, "captured_at": at, "path": f"{camera_id}/{i}.jpg",
                       "sha256": f"{seed}-{first + i}", "size_bytes": 1000, "width": 32, "height": 24,
                       "brightness": float(rng.normal(45 if night else 120, 5)), "contrast": 30.0,
                       "sharpness": float(rng.normal(50, 5)), "is_night": night, "status": FrameStatus.SCORED,
                       "attempts": 1})
        predictions.append({"frame_id": first + i, "model_version_id": site.rollout_model_id,
                            "probabilities": {"bear": score, "empty": 1 - score}, "positive_score": score,
                            "flagged": score > 0.9, "ood_score": float(abs(rng.normal(0.5, 0.3))), "scored_at": at,
                            "embedding": rng.normal(size=EMBEDDING_DIMS).astype(np.float16).tobytes()})
    for chunk in range(0, len(frames), 5000):
        session.execute(sa.insert(Frame), frames[chunk:chunk + 5000])
        session.execute(sa.insert(Prediction), predictions[chunk:chunk + 5000])
    if session.get_bind().dialect.name == "postgresql":  # explicit ids: move the sequence past them
        session.execute(sa.text("SELECT setval(pg_get_serial_sequence('frames', 'id'), (SELECT max(id) FROM frames))"))
    return len(frames)


def _manual_site(session: Session, name: str, since: datetime, tmp_path: Path, cameras: int = 2) -> Site:
    return create_site(session, name, SimSpec(seed=len(name), cameras=cameras), since, tmp_path / "models", SMALL)


@contextmanager
def _rows_read(factory: sessionmaker[Session]) -> Iterator[list[int]]:
    """Counts the rows each statement run through the factory's sessions brought into Python."""
    counts: list[int] = []

    def count(state: ORMExecuteState) -> Any:
        result = state.invoke_statement()
        if not state.is_select:
            return result
        frozen = result.freeze()
        counts.append(len(frozen.data))
        return frozen()

    sa.event.listen(factory, "do_orm_execute", count)
    try:
        yield counts
    finally:
        sa.event.remove(factory, "do_orm_execute", count)


def test_drift_reads_the_same_bounded_sample_after_ten_times_the_history(
    factory: sessionmaker[Session], tmp_path: Path,
) -> None:
    every = timedelta(minutes=1)  # two cameras: 2,880 frames a day, each with its 1 KB embedding
    with factory.begin() as session:
        short = _manual_site(session, "short", NOW - 2 * DAY, tmp_path)  # reference: 1 day (the last is the window)
        long = _manual_site(session, "long", NOW - 11 * DAY, tmp_path)  # reference: the last 7 of 10 days
        _fill(session, short, NOW - 2 * DAY, NOW, every, seed=1)
        _fill(session, long, NOW - 11 * DAY, NOW, every, seed=2)
    # The ledger, and the first read of the current window and of the reference (a manual
    # site's slides with the pass: read by hour too): each clock hour's first frames in
    # sample order (here an hour holds 120 frames, fewer than a sample: every frame of the
    # reference's days and of the window's), kept after, and each window's embeddings. The
    # reference holds at most drift_reference_max_hours (7 days), so this first read is
    # bounded by those 8 days of hours, however long the manual period (adapted from the
    # whole reference's sample, ~2,300 rows, when it was read whole every pass: that read
    # scanned the whole manual period in the database each hour, issue 13).
    reference_days = Thresholds().drift_reference_max_hours / 24
    bound = int((reference_days + 1) * 2880) + 2 * MMD_SAMPLE + 10
    read: dict[str, list[int]] = {}
    checks = {}
    for name in ("short", "long", "long"):
        with _rows_read(factory) as rows, factory() as session:
            site = session.scalars(sa.select(Site).where(Site.name == name)).one()
            check = drift.compute_drift(session, site, NOW)
        assert check.metrics, check.detail
        if name in checks:
            # The second look at the same data: the same numbers; the reference's hours and the
            # window's closed ones come from the cache: the open hour is read again, and the
            # embeddings of both samples.
            assert check.metrics == checks[name]
            assert sum(rows) <= KS_SAMPLE + MMD_SAMPLE + 3 + 10 < sum(read[name]), (rows, read[name])
            continue
        checks[name], read[name] = check.metrics, rows
    # Ten times the history, rows into Python bounded by the reference's cap (the code
    # before the bounded sample read every frame: 5,760 and 31,680).
    assert sum(read["short"]) <= 2 * 2880 + 2 * MMD_SAMPLE + 10 and sum(read["long"]) <= bound, read
    long_metrics = checks["long"]
    # The shares still count every frame of the 7-day reference; the KS and MMD samples are bounded.
    assert long_metrics["night_share"]["n_reference"] == reference_days * 2880
    assert long_metrics["flag_rate"]["n_reference"] == reference_days * 2880
    assert KS_SAMPLE - 2 <= long_metrics["brightness"]["n_reference"] <= KS_SAMPLE
    assert long_metrics["embedding_mmd"]["n_reference"] <= MMD_SAMPLE
    assert not any(m["alarm"] for m in long_metrics.values())  # the same world in both windows
    # Stratified: the sample's night share is the window's, to one frame.
    with factory() as session:
        site = session.scalars(sa.select(Site).where(Site.name == "long")).one()
        window = drift.read_windows(session, [drift.WindowSpec(site.id, site.rollout_model_id, NOW - 11 * DAY,
                                                               NOW - DAY, drift.sample_seed(site))])[0]
    assert window.counts is not None
    share = window.counts.night / window.counts.night_known
    assert abs(window.night.mean() - share) <= 1.5 / len(window.night)


def test_the_drift_pass_runs_the_same_statements_for_one_site_as_for_four(
    engine: sa.Engine, factory: sessionmaker[Session], tmp_path: Path,
) -> None:
    def pass_statements(sites: int) -> int:
        with factory.begin() as session:
            for i in range(sites):
                site = _manual_site(session, f"s{sites}-{i}", NOW - 3 * DAY, tmp_path, cameras=1)
                _fill(session, site, NOW - 3 * DAY, NOW, timedelta(minutes=20), seed=10 * sites + i)
        with sql_sent(engine) as seen:
            run_drift_checks(factory, NOW)
        with factory.begin() as session:
            stored = session.scalar(sa.select(sa.func.count()).select_from(DriftEvent))
            assert stored == sites  # one event per site with a reference
            session.execute(sa.delete(DriftEvent))
            session.execute(sa.update(Site).values(drift_reference_start=NOW - 10 * DAY, drift_reference_end=NOW - 9 * DAY))
        return len(seen)

    with factory() as session:
        is_partitioned(session)  # asked once per engine (bearwatch.partitions), not per pass
    one = pass_statements(1)
    four = pass_statements(4)  # and the first one, whose reference window is now empty
    # 15: with the cameras (once), the windows kept in the database (one lookup), the current
    # windows and the manual sites' references by hour: the hours, the images in two hours,
    # the embeddings of the sample (shadow.drift_windows._read_hourly), the windows read
    # whole, and the kept windows' insert and retention delete. A manual site's own
    # reference is read by hour (it slides with the pass), so the one-site pass reads no
    # window whole; the four-site pass does, once, for the first site's ops window: one
    # statement more for a kind of window, not for a site.
    assert four == one + 1 <= 15, (one, four)


def _promoted_site(factory: sessionmaker[Session], tmp_path: Path, name: str) -> tuple[int, Path]:
    with factory.begin() as session:
        site = _manual_site(session, name, NOW - 8 * DAY, tmp_path, cameras=0)
        record_stage_change(session, site, Stage.LIMITED, actor="ops", reason="test", now=NOW - DAY,
                            trial=(NOW - DAY, NOW + 6 * DAY))
        assert site.rollout_model is not None
        return site.id, Path(site.rollout_model.path)


def _repromote(factory: sessionmaker[Session], site_id: int, at: datetime) -> None:
    with factory.begin() as session:
        site = session.get(Site, site_id)
        assert site is not None and site.stage is Stage.MANUAL
        record_stage_change(session, site, Stage.LIMITED, actor="ops", reason="test", now=at, trial=(at, at + 7 * DAY))


def test_the_guard_hashes_a_model_file_again_only_when_it_changed(
    factory: sessionmaker[Session], tmp_path: Path,
) -> None:
    site_id, model = _promoted_site(factory, tmp_path, "north")
    registered, size = model.read_bytes(), model.stat().st_size
    start = guard.MODEL_FILES.full_hashes

    def look(minutes: int) -> tuple[bool, int, str]:
        [result] = guard.run_guard_all(factory, NOW + timedelta(minutes=minutes))
        return result.demoted, guard.MODEL_FILES.full_hashes - start, " ".join(result.reasons)

    assert look(0)[:2] == (False, 1)  # the first look hashes the file in full
    assert look(1)[:2] == (False, 1)  # unchanged: not again
    os.utime(model, ns=(model.stat().st_atime_ns, model.stat().st_mtime_ns + 10**9))
    assert look(2)[:2] == (False, 2)  # touched: hashed again, the same bytes
    assert look(3)[:2] == (False, 2)

    model.write_bytes(b"x" * size)  # swapped in place: the same size, another mtime
    demoted, hashes, reasons = look(4)
    assert demoted and hashes == 3 and "sha256 mismatch" in reasons
    with factory() as session:
        change = session.scalars(sa.select(StageChange).where(StageChange.site_id == site_id)
                                 .order_by(StageChange.id.desc())).first()
        assert change is not None and (change.actor, change.to_stage) == ("guard", Stage.MANUAL)
        assert "sha256 mismatch" in change.evidence["model_problem"]

    model.write_bytes(registered)
    _repromote(factory, site_id, NOW + timedelta(minutes=5))
    assert look(6)[0] is False
    kept = model.stat()
    model.write_bytes(b"y" * size)  # swapped again, keeping the size and setting the mtime back
    os.utime(model, ns=(kept.st_atime_ns, kept.st_mtime_ns))
    demoted, _, reasons = look(7)
    assert demoted and "sha256 mismatch" in reasons  # the ctime still shows it

    _repromote(factory, site_id, NOW + timedelta(minutes=8))
    model.unlink()
    demoted, _, reasons = look(9)
    assert demoted and "is missing" in reasons


def test_the_guard_does_not_hold_a_write_transaction_while_it_hashes(
    factory: sessionmaker[Session], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    site_id, model = _promoted_site(factory, tmp_path, "lake")
    model.write_bytes(b"changed on disk")  # a new file to hash, and a demotion to write
    monkeypatch.setattr(db, "WRITE_LOCK_WAIT_S", 0.3)
    writes: list[bool] = []
    real_hash = guard.sha256_file

    def hash_while_someone_writes(path: Path, chunk: int = 1 << 20) -> str:
        # Another writer (ingest, a ranger's verdict, a promotion) while the guard reads the file.
        try:
            with db.write_transaction(factory) as session:
                session.execute(sa.select(Site.id).where(Site.id == site_id).with_for_update())
            writes.append(True)
        except sa.exc.OperationalError:
            writes.append(False)
        return real_hash(path, chunk)

    monkeypatch.setattr(guard, "sha256_file", hash_while_someone_writes)
    [result] = guard.run_guard_all(factory, NOW)
    assert writes == [True]  # the other writer was not blocked
    assert result.demoted and "sha256 mismatch" in " ".join(result.reasons)
