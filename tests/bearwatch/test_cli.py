"""The `bearwatch` command, run as a real subprocess on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

from bearwatch.demo.model import TRAIN_DIR_NAME
from tests.conftest import run_cli


def test_help_lists_every_subcommand() -> None:
    result = run_cli("--help")
    assert result.returncode == 0
    for command in ("init", "config", "site", "camera", "model", "status", "demo", "dashboard"):
        assert command in result.stdout
    for group in ("config", "site", "camera", "model"):
        assert run_cli(group, "--help").returncode == 0


def test_commands_refuse_a_database_that_is_not_initialised(data_env: dict[str, str]) -> None:
    result = run_cli("status", env=data_env)
    assert result.returncode == 2
    assert "run `bearwatch init`" in result.stderr
    assert "Traceback" not in result.stderr


def test_status_on_a_missing_sqlite_file_does_not_create_it(tmp_path: Path) -> None:
    """A mistyped database path is an error, and no empty database is left behind."""
    db = tmp_path / "typo" / "bearwatch.db"
    env = {"BEARWATCH_DATA_DIR": str(tmp_path / "data"), "BEARWATCH_DATABASE_URL": f"sqlite:///{db}"}
    for command in (["status"], ["ledger"], ["alerts"]):
        result = run_cli(*command, env=env)
        assert result.returncode == 2 and f"no database at {db}; run `bearwatch init`" in result.stderr, result.stderr
    assert not db.exists() and not db.parent.exists()
    assert run_cli("init", env=env).returncode == 0 and db.exists()


def test_init_site_camera_status_round_trip(data_env: dict[str, str]) -> None:
    assert run_cli("init", env=data_env).returncode == 0
    assert Path(data_env["BEARWATCH_DATA_DIR"]).is_dir()
    assert run_cli("init", env=data_env).returncode == 0  # idempotent

    added = run_cli("site", "add", "north", env=data_env)
    assert added.returncode == 0 and "stage manual" in added.stdout
    again = run_cli("site", "add", "north", env=data_env)
    assert again.returncode == 2 and "already exists" in again.stderr

    cam = run_cli("camera", "add", "north", "gate", "rtsp://ranger:s3cret@10.1.1.1/live", "--interval", "2.5", env=data_env)
    assert cam.returncode == 0, cam.stderr
    assert "s3cret" not in cam.stdout and "rtsp://ranger:***@10.1.1.1/live" in cam.stdout
    missing = run_cli("camera", "add", "south", "gate", "x.avi", env=data_env)
    assert missing.returncode == 2 and "no site named 'south'" in missing.stderr

    status = run_cli("status", env=data_env)
    assert status.returncode == 0, status.stderr
    assert "site north: manual" in status.stdout
    assert "camera gate: unknown, last frame never, every 2.5s" in status.stdout
    assert "s3cret" not in status.stdout
    assert "frames 0" in status.stdout


def test_model_register_reads_classes_and_checks_the_positive_class(
    data_env: dict[str, str], model_export_path: Path
) -> None:
    assert run_cli("init", env=data_env).returncode == 0
    assert run_cli("site", "add", "north", env=data_env).returncode == 0
    wrong = run_cli("model", "register", str(model_export_path), "--name", "m", "--positive", "moose", env=data_env)
    assert wrong.returncode == 2
    assert "moose not in the model's classes: bear, deer, empty" in wrong.stderr
    ok = run_cli(
        "model", "register", str(model_export_path), "--name", "m", "--positive", "bear",
        "--threshold", "0.7", "--site", "north", "--reference", str(model_export_path.parent / TRAIN_DIR_NAME),
        env=data_env,
    )
    assert ok.returncode == 0, ok.stderr
    assert "classes bear, deer, empty, positive bear, threshold 0.7, role rollout" in ok.stdout
    assert "out-of-domain reference fitted" in ok.stdout
    # Loading and fitting take a while on a busy machine: it says so as it goes (stderr, a pipe here).
    assert f"loading {model_export_path.name} (" in ok.stderr
    assert "fitting the out-of-domain reference: 180/180 images (100%), elapsed " in ok.stderr
    status = run_cli("status", env=data_env)
    assert "site north: manual" in status.stdout and ", m" in status.stdout
    dup = run_cli("model", "register", str(model_export_path), "--name", "m", "--positive", "bear", env=data_env)
    assert dup.returncode == 2 and "already registered" in dup.stderr
    assert f"loading {model_export_path.name}" not in dup.stderr, "a second register of the same file fails before loading it"


def test_config_apply_creates_then_reports_nothing_to_change(data_env: dict[str, str], tmp_path: Path) -> None:
    park = tmp_path / "park.yaml"
    park.write_text(
        "sites:\n  - name: lake\n    cameras:\n      - {name: shore, source: /footage/shore.avi, interval: 3}\n"
    )
    assert run_cli("init", env=data_env).returncode == 0
    first = run_cli("config", "apply", str(park), env=data_env)
    assert first.returncode == 0, first.stderr
    assert "created site lake" in first.stdout and "created camera lake/shore" in first.stdout
    second = run_cli("config", "apply", str(park), env=data_env)
    assert second.stdout.strip() == "nothing to change"
