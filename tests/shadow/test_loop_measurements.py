"""The shadow loop runs the measurements by itself: a real `bearwatch shadow` process
demotes a promoted site whose model file changed, stores drift checks, and beats."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from bearwatch.demo.simulate import SimSpec, create_site, simulate
from bearwatch.schema import DriftEvent, Heartbeat, ProcessState, Site, Stage, StageChange, utcnow
from shadow.rollout import record_stage_change
from tests.conftest import wait_for
from tests.partitions import partitions_of
from tests.shadow.scenario import SAMPLED, SMALL
from tests.shadow.test_loop import Loop

DAY = timedelta(days=1)


def test_the_loop_guard_demotes_a_site_whose_model_file_changed_and_drift_is_checked(
    cli_db: sessionmaker[Session], data_env: dict[str, str], tmp_path: Path
) -> None:
    now = utcnow()
    start, promoted = now - 8 * DAY, now - DAY
    spec = SimSpec(seed=5, cameras=2, model_recall=0.98, model_precision=0.9)
    with cli_db.begin() as session:
        site = create_site(session, "north", spec, start, tmp_path / "models", SMALL)
        simulate(session, site, spec, start, promoted, tmp_path / "frames")
        record_stage_change(session, site, Stage.LIMITED, actor="ops", reason="gate passed", now=promoted,
                            trial=(promoted, promoted + 7 * DAY))
        simulate(session, site, spec, promoted, now, tmp_path / "frames")
        site_id = site.id
    model_file = tmp_path / "models" / "north-model.bin"

    loop = Loop(data_env, tmp_path / "loop.log", "--guard-every", "1", "--drift-every", "1")
    try:
        def drift_checked() -> bool:
            with cli_db() as session:
                return session.scalar(sa.select(sa.func.count()).select_from(DriftEvent)) > 0

        wait_for("a stored drift check", drift_checked, timeout=60)
        with cli_db() as session:  # a good model on healthy cameras: the guard leaves it alone
            assert session.get(Site, site_id).stage is Stage.LIMITED  # type: ignore[union-attr]
            assert not session.scalars(sa.select(DriftEvent)).first().alarm  # type: ignore[union-attr]
        model_file.write_bytes(b"someone replaced the model file")

        def demoted() -> bool:
            with cli_db() as session:
                return session.get(Site, site_id).stage is Stage.MANUAL  # type: ignore[union-attr]

        wait_for("the guard to demote the site", demoted, timeout=60)

        def beating() -> bool:  # a round ends with a heartbeat; the demotion may come mid-round
            with cli_db() as session:
                return session.scalar(sa.select(sa.func.count()).where(Heartbeat.part == "shadow")) == 1

        wait_for("the loop's heartbeat", beating, timeout=30)
        with cli_db() as session:
            change = session.scalars(sa.select(StageChange).where(StageChange.site_id == site_id)
                                     .order_by(StageChange.id.desc())).first()
            beat = session.scalars(sa.select(Heartbeat).where(Heartbeat.part == "shadow")).one()
        assert change is not None and (change.actor, change.from_stage, change.to_stage) == ("guard", Stage.LIMITED, Stage.MANUAL)
        assert "sha256" in change.reason
        assert beat.state is ProcessState.RUNNING and beat.pid == loop.proc.pid
    finally:
        assert loop.stop() == 0
    with cli_db() as session:
        assert session.scalars(sa.select(Heartbeat).where(Heartbeat.part == "shadow")).one().state is ProcessState.STOPPED


def test_the_loop_leader_applies_retention_keeping_evidence_and_thins_old_embeddings(
    cli_db: sessionmaker[Session], data_env: dict[str, str], tmp_path: Path
) -> None:
    from bearwatch.schema import Camera, Decision, Frame, Prediction
    from shadow.drift_sampling import sample_rank, sample_seed_sql
    from shadow.embedding_retention import KEEP_FRACTION, keep_threshold

    frames_root = Path(data_env["BEARWATCH_DATA_DIR"]) / "frames"
    now = utcnow()
    start = now - 4 * DAY - timedelta(minutes=30)  # hourly frames half an hour off the cutoff
    spec = SimSpec(seed=6, cameras=1, frame_interval_s=3600.0)
    partitions_of(cli_db, 49)  # PostgreSQL: the 49 frames older than the cutoff apart, as a park's days
    with cli_db.begin() as session:
        site = create_site(session, "lake", spec, start, tmp_path / "models", SAMPLED)
        simulate(session, site, spec, start, now, frames_root)
    cutoff = now - 2 * DAY

    def old_frames() -> tuple[int, int]:
        with cli_db() as session:
            old = sa.select(Frame.id).where(Frame.captured_at < cutoff)
            total = session.scalar(sa.select(sa.func.count()).select_from(old.subquery())) or 0
            reviewed = session.scalar(sa.select(sa.func.count(sa.distinct(Decision.frame_id))).where(Decision.frame_id.in_(old))) or 0
        return total, reviewed

    before_total, before_reviewed = old_frames()
    assert before_total > before_reviewed > 0
    with cli_db() as session:
        young = session.scalar(sa.select(sa.func.count()).where(Frame.captured_at >= cutoff))
    def embeddings() -> dict[bool, list[tuple[bool, bool]]]:
        """Young or not -> (kept by the hash rule, has its embedding) per prediction."""
        rank = sample_rank(Frame.id, sample_seed_sql(Camera.site_id))
        with cli_db() as session:
            rows = session.execute(
                sa.select(Frame.captured_at >= cutoff, rank < keep_threshold(KEEP_FRACTION), Prediction.embedding.is_not(None))
                .join(Prediction, Prediction.frame_id == Frame.id).join(Camera, Camera.id == Frame.camera_id)).all()
        return {young: [(kept, has) for y, kept, has in rows if y == young] for young in (True, False)}

    assert all(has for _, has in embeddings()[False])
    loop = Loop(data_env, tmp_path / "loop.log", "--retention-days", "2", "--embedding-days", "2", "--drift-every", "3600")
    try:
        wait_for("retention to run", lambda: old_frames()[0] < before_total, timeout=60)
        wait_for("embeddings to be thinned", lambda: not all(has for _, has in embeddings()[False]), timeout=60)
    finally:
        assert loop.stop() == 0
    thinned = embeddings()
    assert all(has for _, has in thinned[True]), "a prediction of the last 2 days lost its embedding"
    assert thinned[False] and all(has == kept for kept, has in thinned[False]), "old embeddings not thinned by the hash rule"
    after_total, after_reviewed = old_frames()
    assert after_reviewed == before_reviewed and after_total == before_reviewed  # only the evidence is left
    with cli_db() as session:
        assert session.scalar(sa.select(sa.func.count()).where(Frame.captured_at >= cutoff)) == young
        paths = set(session.scalars(sa.select(Frame.path)))
    on_disk = {p.relative_to(frames_root).as_posix() for p in frames_root.rglob("*.jpg")}
    assert on_disk == paths  # deleted rows took their files with them
