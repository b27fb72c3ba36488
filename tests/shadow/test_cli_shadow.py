"""The shadow subcommands as a real `bearwatch` subprocess on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner

from bearwatch.errors import InvalidTransition
from bearwatch.schema import Role, Site, Stage, utcnow
from shadow.gates import Check, GateOutcome, GateResult
from tests.conftest import run_cli
from tests.shadow.helpers import add_frame, add_user, make_park


def test_verdict_alerts_demote_ledger(cli_db: sessionmaker[Session], data_env: dict[str, str]) -> None:
    park = make_park(cli_db)
    add_user(cli_db, "ana", Role.RANGER)
    add_user(cli_db, "olga", Role.OPS)
    now = utcnow()
    flagged = add_frame(cli_db, park.cameras[0], now - timedelta(minutes=5), model_id=park.model_id, score=0.9)
    as_ana = {**data_env, "BEARWATCH_USER": "ana"}

    queue = run_cli("review", env=as_ana)
    assert queue.returncode == 0 and f"frame {flagged} north/cam0" in queue.stdout and "sighting alert" in queue.stdout
    done = run_cli("verdict", str(flagged), "confirm", "--note", "sow with cub", env=as_ana)
    assert done.returncode == 0, done.stderr
    assert "recorded; a sighting alert is sent" in done.stdout
    assert "already recorded (no change)" in run_cli("verdict", str(flagged), "confirm", env=as_ana).stdout
    changed = run_cli("verdict", str(flagged), "dismiss", env=as_ana)
    assert changed.returncode == 2 and "already marked frame" in changed.stderr and "Traceback" not in changed.stderr
    nobody = run_cli("verdict", str(flagged), "dismiss", "--user", "ghost", env=data_env)
    assert nobody.returncode == 2 and "no user named 'ghost'" in nobody.stderr

    listed = run_cli("alerts", "--site", "north", "--status", "queued", env=data_env)
    assert listed.returncode == 0 and f"frame {flagged}" in listed.stdout and "manual queued from ranger" in listed.stdout
    assert "no alerts" in run_cli("alerts", "--status", "sent", env=data_env).stdout

    refused = run_cli("promote", "north", "--reason", "ready", env=as_ana)
    assert refused.returncode == 2 and "ana (ranger) may not promote a site" in refused.stderr
    assert run_cli("demote", "north", "--to", "limited", "--reason", "x", env=as_ana).returncode == 2
    demoted = run_cli("demote", "north", "--to", "manual", "--reason", "x", "--user", "olga", env=data_env)
    assert demoted.returncode == 2 and "cannot demote north from manual to manual" in demoted.stderr
    ledger = run_cli("ledger", "--site", "north", env=data_env)
    assert ledger.returncode == 0 and "no stage changes" in ledger.stdout
    # A mistyped site is an error naming the known ones, not an empty listing.
    for command in (["review", "--site", "nrth"], ["alerts", "--site", "nrth"], ["ledger", "--site", "nrth"],
                    ["export-dataset", str(data_env["BEARWATCH_DATA_DIR"]) + "/export", "--site", "nrth"]):
        typo = run_cli(*command, env=as_ana)
        assert typo.returncode == 2 and "no site named 'nrth' (known sites: north)" in typo.stderr, (command, typo.stderr)


def test_promote_prints_each_failing_check_and_exits_2(cli_db: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch) -> None:
    """In-process (CliRunner), with a gate result substituted for the evaluator so the
    printed lines are known exactly (the real gates are tested in test_gate_checks and
    test_scenario_gates)."""
    from bearwatch import cli
    from shadow import gates

    make_park(cli_db, stage=Stage.MANUAL)
    add_user(cli_db, "olga", Role.OPS)

    def failing(session: Session, site: Site, now):  # type: ignore[no-untyped-def]
        checks = (Check("reviewed_frames", GateOutcome.INCONCLUSIVE, 120, 300, ">=", detail="not enough reviews yet"),
                  Check("precision_lower_bound", GateOutcome.FAIL, 0.41, 0.5, ">="))
        return GateResult(site.name, site.stage, Stage.LIMITED, GateOutcome.FAIL, checks, now)

    monkeypatch.setattr(gates, "evaluate_gate", failing)
    result = CliRunner().invoke(cli.app, ["promote", "north", "--reason", "ready", "--user", "olga", "--hours", "20-6"])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert "stays manual" in lines[0]
    assert lines[1:] == ["  inconclusive: reviewed_frames = 120, needs >= 300 (not enough reviews yet)",
                         "  fail: precision_lower_bound = 0.41, needs >= 0.5"]

    def passing(session: Session, site: Site, now):  # type: ignore[no-untyped-def]
        check = Check("reviewed_frames", GateOutcome.PASS, 320, 300, ">=")
        return GateResult(site.name, site.stage, Stage.LIMITED, GateOutcome.PASS, (check,), now)

    monkeypatch.setattr(gates, "evaluate_gate", passing)
    result = CliRunner().invoke(cli.app, ["promote", "north", "--reason", "gate passed", "--user", "olga",
                                          "--cameras", "cam1", "--hours", "20-6"])
    assert result.exit_code == 0, result.output
    assert "site north promoted to limited; trial" in result.output
    ledger = CliRunner().invoke(cli.app, ["ledger"])
    assert "north: manual -> limited by olga" in ledger.output and "gate pass: gate passed" in ledger.output
    stale = CliRunner().invoke(cli.app, ["promote", "north", "--reason", "again", "--user", "olga", "--from", "manual"])
    # bearwatch's entry point turns this error into "error: ..." and exit 2 (CliRunner skips it)
    assert isinstance(stale.exception, InvalidTransition) and "north is limited now, not manual" in str(stale.exception)


def test_help_lists_the_shadow_commands() -> None:
    result = run_cli("--help")
    assert result.returncode == 0
    for command in ("verdict", "undo-verdict", "review", "alerts", "channels", "promote", "demote", "ledger", "shadow",
                    "export-dataset"):
        assert command in result.stdout
    promote = run_cli("promote", "--help")
    assert "--override" in promote.stdout and "BEARWATCH_USER" in promote.stdout


def test_two_verdict_processes_at_once(cli_db: sessionmaker[Session], data_env: dict[str, str]) -> None:
    """Two real processes: the same ranger confirms and dismisses one frame at the same
    moment, another ranger confirms it; each ranger ends with one verdict."""
    import os
    import subprocess
    import sys

    import sqlalchemy as sa

    from bearwatch.schema import Decision

    park = make_park(cli_db)
    add_user(cli_db, "ana", Role.RANGER)
    add_user(cli_db, "ben", Role.RANGER)
    frame = add_frame(cli_db, park.cameras[0], utcnow(), model_id=park.model_id, score=0.9)
    runs = [("ana", "confirm"), ("ana", "dismiss"), ("ben", "confirm")]
    procs = [subprocess.Popen([sys.executable, "-m", "bearwatch", "verdict", str(frame), verdict, "--user", user],
                              env={**os.environ, **data_env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for user, verdict in runs]
    results = [p.communicate(timeout=120) + (p.returncode,) for p in procs]
    codes = [code for _, _, code in results]
    assert codes[2] == 0 and sorted(codes[:2]) == [0, 2]
    loser = results[codes.index(2)]
    assert "already marked frame" in loser[1] and "Traceback" not in loser[1]
    with cli_db() as session:
        rows = session.execute(sa.select(Decision.reviewer_id, Decision.verdict)).all()
    assert len(rows) == 2 and len({r for r, _ in rows}) == 2
