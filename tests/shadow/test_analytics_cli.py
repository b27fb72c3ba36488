"""The analytics subcommands as a user runs them: a real `bearwatch` subprocess on a
simulated site (SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from bearwatch.demo.simulate import SimSpec, add_footage_frames, create_site, simulate
from bearwatch.schema import DriftEvent, Site, Stage, utcnow
from shadow.rollout import record_stage_change
from tests.conftest import run_cli
from tests.shadow.scenario import SMALL


def test_agreement_gate_drift_guard_commands(factory: sessionmaker[Session], data_env: dict[str, str], tmp_path: Path) -> None:
    now = utcnow().replace(microsecond=0)
    start = now - timedelta(days=8)
    frames = Path(data_env["BEARWATCH_DATA_DIR"]) / "frames"
    spec = SimSpec(seed=9, model_recall=0.995, night_recall_factor=1.0, model_precision=0.9)
    with factory.begin() as session:
        # A census audit and a 0.7 bar: the week decides whatever hour of the day the test runs at.
        decisive = SMALL.model_copy(update={"min_recall_lower": 0.7, "audit_rate": 1.0, "audit_near_rate": 1.0})
        create_site(session, "north", spec, start, tmp_path / "models", decisive)
        simulate(session, session.scalar(sa.select(Site).where(Site.name == "north")), spec, start, now - timedelta(hours=2), frames)  # type: ignore[arg-type]

    out = run_cli("agreement", "north", env=data_env)
    assert out.returncode == 0, out.stderr
    assert "sighting recall" in out.stdout and "anytime-valid bounds" in out.stdout and "Horvitz-Thompson" in out.stdout
    assert "frames (secondary view" in out.stdout and "95% CI" in out.stdout and "kappa" in out.stdout
    never = run_cli("agreement", "north", "--stage", "expanded", env=data_env)
    assert never.returncode == 2 and "never been in the expanded stage" in never.stderr

    gate = run_cli("gate", "north", env=data_env)  # no drift check yet: inconclusive, exit 1
    assert gate.returncode == 1, gate.stderr
    assert "gate manual -> limited for north: INCONCLUSIVE" in gate.stdout
    assert "no_drift_alarm: no drift check ran" in gate.stdout and "sighting_recall" in gate.stdout

    drift = run_cli("drift", "north", "--record", env=data_env)
    assert drift.returncode == 0, drift.stderr
    assert "embedding_mmd" in drift.stdout and "no drift" in drift.stdout
    with factory() as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(DriftEvent)) == 1

    passed = run_cli("gate", "north", env=data_env)
    assert passed.returncode == 0, passed.stdout + passed.stderr
    assert "PASS" in passed.stdout and passed.stdout.count("[        pass]") == 8

    assert "nothing to guard" in run_cli("guard", env=data_env).stdout
    with factory.begin() as session:
        site = session.scalar(sa.select(Site).where(Site.name == "north"))
        assert site is not None
        record_stage_change(session, site, Stage.LIMITED, actor="ops", reason="test", now=now - timedelta(minutes=90),
                            trial=(now, now + timedelta(days=7)))
    guarded = run_cli("guard", env=data_env)  # no frame for 2 h, promoted 90 min ago: cameras dark
    assert guarded.returncode == 0, guarded.stderr
    assert "site north: DEMOTED limited -> manual" in guarded.stdout and "cameras dark" in guarded.stdout

    missing = run_cli("gate", "nowhere", env=data_env)
    assert missing.returncode == 2 and "error: no site named 'nowhere'" in missing.stderr


def test_backtest_command_writes_the_report(
    factory: sessionmaker[Session], data_env: dict[str, str], tmp_path: Path, model_export_path: Path
) -> None:
    start = utcnow().replace(microsecond=0) - timedelta(days=1)
    frames = Path(data_env["BEARWATCH_DATA_DIR"]) / "frames"
    with factory.begin() as session:
        site = create_site(session, "lake", SimSpec(cameras=1), start, tmp_path / "models", SMALL)
        add_footage_frames(session, site, frames, start, count=12, seed=3)
    report = tmp_path / "out" / "backtest.html"
    out = run_cli("backtest", "--model", str(model_export_path), "--site", "lake", "--from", start.date().isoformat(),
                  "--report", str(report), "--positive", "bear", env=data_env)
    assert out.returncode == 0, out.stderr
    assert "replayed 12 frames" in out.stdout and "gate manual -> limited" in out.stdout
    # Output is a pipe here, where a progress bar is never drawn: progress comes as lines.
    assert "replaying frames: 12/12 frames (100%), elapsed " in out.stderr and ", done" in out.stderr
    assert report.read_text(encoding="utf-8").count("data:image/jpeg;base64,") == 12
    # Without --report it goes to <data dir>/reports/, where the dashboard's Models page lists it.
    from dashboard.queries.agreement import backtest_reports

    default = run_cli("backtest", "--model", str(model_export_path), "--site", "lake", "--from", start.date().isoformat(),
                      "--positive", "bear", env=data_env)
    assert default.returncode == 0, default.stderr
    listed = backtest_reports(Path(data_env["BEARWATCH_DATA_DIR"]) / "reports")
    assert len(listed) == 1 and listed[0].name.startswith("backtest-lake-") and f"report: {listed[0].path}" in default.stdout
    bad = run_cli("backtest", "--model", str(tmp_path / "nope.pkl"), "--site", "lake", "--report", str(report), env=data_env)
    assert bad.returncode == 2 and "does not exist" in bad.stderr
