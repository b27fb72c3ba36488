"""The guard: its pure decision table, and scenarios on a simulated site where it demotes
by itself and writes the ledger row (SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from bearwatch.demo.simulate import SimSpec, create_site, simulate
from bearwatch.park_file import Thresholds
from bearwatch.schema import Site, Stage, StageChange
from shadow.guard import GuardFindings, decide, run_guard, run_guard_all
from shadow.rollout import record_stage_change
from shadow.stats import rate_ratio_test
from tests.partitions import end_partition
from tests.shadow.scenario import DAY, SMALL, START

T = Thresholds()


def findings(**kw: object) -> GuardFindings:
    base: dict[str, object] = dict(rate=rate_ratio_test(100, 100.0, 100, 100.0), drift_alarm_ids=(), model_problem=None,
                                   cameras_enabled=2, cameras_offline=0, last_usable_frame_at=START, dark_for_s=60.0)
    base.update(kw)
    return GuardFindings(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("f", "demote", "words"),
    [
        (findings(), False, ""),
        (findings(rate=None), False, ""),  # no baseline: nothing to compare, no demotion
        (findings(rate=rate_ratio_test(400, 100.0, 100, 100.0)), True, "alert rate up"),
        (findings(rate=rate_ratio_test(10, 100.0, 100, 100.0)), True, "alert rate down"),
        (findings(rate=rate_ratio_test(230, 100.0, 100, 100.0)), False, ""),  # 2.3x, not significant
        (findings(rate=rate_ratio_test(6, 10.0, 1, 10.0)), False, ""),  # 6x on tiny counts: not significant
        (findings(drift_alarm_ids=(7,)), True, "drift"),
        (findings(model_problem="file changed (sha256 mismatch)"), True, "sha256"),
        (findings(cameras_offline=2), True, "all 2 enabled cameras offline"),
        (findings(cameras_offline=1), False, ""),  # one camera down is a camera problem, not the guard's
        (findings(dark_for_s=3600.0), True, "no usable frame"),  # exactly dark_after_s
        (findings(dark_for_s=3599.0), False, ""),
    ],
)
def test_guard_decision_table(f: GuardFindings, demote: bool, words: str) -> None:
    d = decide(f, T)
    assert d.demote is demote
    assert words in " ".join(d.reasons)
    assert len(d.causes) == len(d.reasons)


def _promote(session: Session, site: Site, now, stage: Stage = Stage.LIMITED) -> None:  # type: ignore[no-untyped-def]
    trial = (now, now + 7 * DAY) if stage is Stage.LIMITED else None
    record_stage_change(session, site, stage, actor="ops", reason="test", now=now, trial=trial)


def test_alert_rate_doubling_after_promotion_demotes_to_manual(factory: sessionmaker[Session], tmp_path: Path) -> None:
    promoted = START + 7 * DAY
    # The model alerts three times as often from the promotion on: about 3.3x the baseline's
    # sightings. With a week's baseline (45 sightings) the anytime-valid guard is sure on day 5.
    spec = SimSpec(seed=2, model_recall=0.98, model_precision=0.7, alert_multiplier=3.0, alert_multiplier_from=promoted)
    with factory.begin() as session:
        site = create_site(session, "lake", spec, START, tmp_path / "models", SMALL)
        simulate(session, site, spec, START, promoted, tmp_path / "frames")
        _promote(session, site, promoted)
        early_at = promoted + timedelta(hours=2)
        simulate(session, site, spec, promoted, early_at, tmp_path / "frames")
        early = run_guard(session, site, early_at)  # two hours: too little evidence yet
        assert not early.demoted, early.reasons
        simulate(session, site, spec, early_at, promoted + 6 * DAY, tmp_path / "frames")
    from prometheus_client import REGISTRY

    def demotions() -> float:
        return REGISTRY.get_sample_value("bearwatch_guard_demotions_total", {"site": str(site_id), "cause": "alert_rate"}) or 0.0

    site_id = site.id
    before = demotions()
    results = run_guard_all(factory, promoted + 6 * DAY)
    assert [(r.site, r.demoted) for r in results] == [("lake", True)]
    assert demotions() == before + 1
    assert "alert rate up" in results[0].reasons[0]
    with factory() as session:
        site = session.scalar(sa.select(Site).where(Site.name == "lake"))
        assert site is not None and site.stage is Stage.MANUAL and site.trial_start is None
        row = session.scalars(sa.select(StageChange).where(StageChange.site_id == site.id).order_by(StageChange.id)).all()[-1]
        assert (row.actor, row.from_stage, row.to_stage) == ("guard", Stage.LIMITED, Stage.MANUAL)
        assert row.evidence["alert_rate"]["ratio"] > 2.0 and row.evidence["alert_rate"]["e_up"] >= row.evidence["alert_rate"]["e_level"]
        assert "anytime-valid" in row.evidence["alert_rate"]["method"]
        assert row.model_version_id == site.rollout_model_id
    assert run_guard_all(factory, promoted + 6 * DAY) == []  # manual now: nothing to guard


def test_model_file_change_and_dark_cameras_demote(factory: sessionmaker[Session], tmp_path: Path) -> None:
    spec = SimSpec(seed=3, cameras=2, model_recall=0.98, model_precision=0.9)
    end = START + 8 * DAY
    with factory.begin() as session:
        site = create_site(session, "north", spec, START, tmp_path / "models", SMALL)
        simulate(session, site, spec, START, START + 7 * DAY, tmp_path / "frames")
        _promote(session, site, START + 7 * DAY, Stage.LIMITED)
        simulate(session, site, spec, START + 7 * DAY, end, tmp_path / "frames")
        assert not run_guard(session, site, end).demoted  # a good model, cameras streaming
        # No frame from any camera for more than dark_after_s: cameras dark.
        dark = run_guard(session, site, end + timedelta(seconds=SMALL.dark_after_s + 60))
        assert dark.demoted and "cameras dark" in dark.reasons[0]
        # Back to limited; then the model file changes on disk.
        later = end + timedelta(hours=2)
        _promote(session, site, later, Stage.LIMITED)
        assert not run_guard(session, site, later).demoted  # the dark clock starts at the stage change
        assert site.rollout_model is not None
        Path(site.rollout_model.path).write_bytes(b"not the registered model")
        changed = run_guard(session, site, later)
        assert changed.demoted and any("sha256" in r for r in changed.reasons)
        evidence = session.get(StageChange, changed.stage_change_id).evidence  # type: ignore[union-attr]
        assert "sha256" in evidence["model_problem"]


def test_a_site_the_guard_cannot_check_leaves_the_other_sites_guarded(
    factory: sessionmaker[Session], tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    """A site whose stored thresholds no longer validate (a client that skipped the UI wrote
    them) fails its own check, logged and counted; the pass still demotes the site beside it
    whose cameras went dark. Before, the first failing site ended the pass for all."""
    from prometheus_client import REGISTRY

    spec = SimSpec(seed=5, cameras=1)
    with factory.begin() as session:
        broken = create_site(session, "aaa-broken", spec, START, tmp_path / "models", SMALL)
        dark = create_site(session, "zzz-dark", spec, START, tmp_path / "models2", SMALL)
        for site in (broken, dark):
            _promote(session, site, START, Stage.LIMITED)
        broken_id, dark_id = broken.id, dark.id
    with factory.begin() as session:  # sorted by name, the broken site is checked first
        session.execute(sa.update(Site).where(Site.id == broken_id).values(thresholds={"alert_ratio_low": -1.0}))

    def failures() -> float:
        return REGISTRY.get_sample_value("bearwatch_guard_failures_total", {"site": str(broken_id)}) or 0.0

    before = failures()
    results = run_guard_all(factory, START + timedelta(seconds=SMALL.dark_after_s + 60))
    assert [(r.site, r.demoted) for r in results] == [("zzz-dark", True)]
    assert failures() == before + 1
    assert f"guard: site {broken_id} could not be checked" in caplog.text
    with factory() as session:
        assert session.get(Site, dark_id).stage is Stage.MANUAL  # type: ignore[union-attr]
        assert session.get(Site, broken_id).stage is Stage.LIMITED  # type: ignore[union-attr]


@pytest.mark.parametrize("rolled_up", [True, False], ids=["hours-kept", "hours-from-frames"])
def test_retention_of_the_baseline_frames_leaves_the_guard_the_alert_rate_it_had(
    factory: sessionmaker[Session], tmp_path: Path, rolled_up: bool,
) -> None:
    """Retention deletes the frames nobody reviewed and keeps the evidence, the bear frames
    rangers confirmed. The baseline's camera-hours were counted from its frames, so they
    shrank to the hours still holding a frame (336 -> 51 here): the baseline's rate rose
    six times over, and the guard saw an unchanged alert rate at a third of the baseline,
    below the band, on its way to a demotion. The shadow loop's rollup keeps the hours
    (shadow.camera_hours); ``hours-from-frames`` shows the old reading, as it was."""
    from ingest.store import FrameStore
    from ingest.sweeper import retain
    from shadow.camera_hours import clear_hours_cache, roll_camera_hours

    promoted, now = START + 7 * DAY, START + 10 * DAY
    spec = SimSpec(seed=4, model_recall=0.98, model_precision=0.9)
    flags_only = SMALL.model_copy(update={"audit_rate": 0.0, "audit_near_rate": 0.0})  # rangers review the flags
    with factory.begin() as session:
        site = create_site(session, "lake", spec, START, tmp_path / "models", flags_only)
        simulate(session, site, spec, START, promoted, tmp_path / "frames")
        end_partition(session)  # PostgreSQL: the manual period's frames in partitions of their own, as its days
        _promote(session, site, promoted, Stage.LIMITED)
        simulate(session, site, spec, promoted, now, tmp_path / "frames")
    while rolled_up and roll_camera_hours(factory, now, hours=1000):
        pass

    def guard_pass() -> dict[str, float]:
        clear_hours_cache()  # a restarted process
        results = run_guard_all(factory, now)
        assert [(r.site, r.demoted) for r in results] == [("lake", False)]
        return results[0].evidence["alert_rate"]  # type: ignore[no-any-return]

    before = guard_pass()
    assert before["low"] < before["ratio"] < before["high"] and before["baseline_camera_hours"] == 7 * 24 * 2
    retain(factory, FrameStore(tmp_path / "frames"), days=2, now=now)
    after = guard_pass()
    if rolled_up:
        assert after == before
    else:
        assert after["baseline_camera_hours"] < before["baseline_camera_hours"] / 4 and after["ratio"] < after["low"]
