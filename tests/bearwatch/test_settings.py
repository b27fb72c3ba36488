"""Settings come from BEARWATCH_* variables, read at the entry point, never at import."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bearwatch.errors import ConfigError
from bearwatch.settings import load_settings


def test_default_database_is_sqlite_under_the_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BEARWATCH_DATABASE_URL", raising=False)
    monkeypatch.setenv("BEARWATCH_DATA_DIR", str(tmp_path / "park"))
    settings = load_settings()
    assert settings.database_url == f"sqlite:///{(tmp_path / 'park' / 'bearwatch.db').resolve()}"
    assert settings.frames_dir == tmp_path / "park" / "frames"


def test_environment_overrides_and_bad_values_name_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BEARWATCH_DATABASE_URL", "postgresql+psycopg://db.park/bearwatch")
    assert load_settings().database_url == "postgresql+psycopg://db.park/bearwatch"
    monkeypatch.setenv("BEARWATCH_DASHBOARD_PORT", "not-a-port")
    with pytest.raises(ConfigError, match="BEARWATCH_DASHBOARD_PORT"):
        load_settings()


def test_importing_every_package_reads_no_environment_and_touches_nothing(tmp_path: Path) -> None:
    """With deliberately broken settings, importing all modules must still succeed and
    create no data dir: nothing reads settings or opens a database at import time."""
    code = (
        "import bearwatch.cli, bearwatch.db, bearwatch.schema, bearwatch.migrations, bearwatch.park_apply, "
        "bearwatch.status, ingest.scheduler, ingest.sampler, inference.worker, dashboard.queries, shadow.sites"
    )
    env = {"BEARWATCH_DATABASE_URL": "nonsense://", "BEARWATCH_DATA_DIR": str(tmp_path / "d"),
           "BEARWATCH_DASHBOARD_PORT": "x", "PATH": "/usr/bin:/bin"}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert not (tmp_path / "d").exists()


def test_cli_reports_bad_settings_as_one_line(tmp_path: Path) -> None:
    env = {"BEARWATCH_DASHBOARD_PORT": "x", "BEARWATCH_DATA_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"}
    result = subprocess.run([sys.executable, "-m", "bearwatch", "status"], env=env, capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.strip().startswith("error: invalid settings: BEARWATCH_DASHBOARD_PORT")
