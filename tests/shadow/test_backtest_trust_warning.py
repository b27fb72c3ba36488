"""`backtest --model` unpickles a file just as `model register` does, so it says the same
trust warning (issue 15 item 12). Real `bearwatch` subprocesses on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

from inference import TRUST_WARNING
from tests.conftest import run_cli


def test_backtest_says_the_trust_warning_register_says(data_env: dict[str, str], tmp_path: Path) -> None:
    assert run_cli("init", env=data_env).returncode == 0
    assert run_cli("site", "add", "lake", env=data_env).returncode == 0
    model = tmp_path / "candidate.pkl"  # absent: the warning comes before anything is loaded

    register = run_cli("model", "register", str(model), "--name", "m", "--positive", "bear", env=data_env)
    backtest = run_cli("backtest", "--model", str(model), "--site", "lake", env=data_env)

    warning = f"warning: {TRUST_WARNING}"
    assert warning in register.stderr.splitlines(), register.stderr
    assert warning in backtest.stderr.splitlines(), backtest.stderr
    assert backtest.returncode == 2 and "does not exist" in backtest.stderr
    assert "loading it runs any code" in run_cli("backtest", "--help").stdout.replace("\n", " ")
