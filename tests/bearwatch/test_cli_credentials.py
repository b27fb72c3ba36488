"""Camera credentials in the forms that leaked (issue 15 item 11): a password with a '#',
secrets in query values. They never reach `camera add`, `config apply`, `status` or a
camera's last_error, and a literal secret in a source draws a warning pointing to ${VAR}.
Real `bearwatch` subprocesses on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from bearwatch.schema import Camera, utcnow
from dashboard.queries.cameras import camera_health
from ingest.cameras import add_camera
from ingest.sampler import Outcome, sample_camera
from ingest.store import FrameStore
from shadow.sites import add_site
from tests.conftest import run_cli

HASH_PASSWORD = "rtsp://admin:pa#ssw0rd@10.1.1.1/live"
QUERY_PASSWORD = "http://10.1.1.2/snap.cgi?user=admin&passwd=hunter2"
SECRETS = ("pa#ssw0rd", "ssw0rd", "hunter2")


def _assert_no_secret(*texts: str) -> None:
    for text in texts:
        for secret in SECRETS:
            assert secret not in text, text


def test_camera_add_prints_no_secret_and_warns_about_literal_ones(data_env: dict[str, str]) -> None:
    assert run_cli("init", env=data_env).returncode == 0
    assert run_cli("site", "add", "north", env=data_env).returncode == 0

    gate = run_cli("camera", "add", "north", "gate", HASH_PASSWORD, env=data_env)
    assert gate.returncode == 0, gate.stderr
    _assert_no_secret(gate.stdout, gate.stderr)
    assert "rtsp://admin:***@10.1.1.1/live" in gate.stdout
    assert "warning: camera north/gate: the source holds a literal password" in gate.stderr
    assert "${NAME}" in gate.stderr and "rtsp://admin:${CAM_PASSWORD}@" in gate.stderr

    snap = run_cli("camera", "add", "north", "snap", QUERY_PASSWORD, env=data_env)
    assert snap.returncode == 0, snap.stderr
    _assert_no_secret(snap.stdout, snap.stderr)
    assert "http://10.1.1.2/snap.cgi?user=***&passwd=***" in snap.stdout
    assert "warning: camera north/snap: the source holds a literal query value of 'passwd'" in snap.stderr

    clean = run_cli("camera", "add", "north", "lake", "rtsp://admin:${CAM_PW}@10.1.1.3/live?token=${CAM_TOKEN}",
                    env=data_env)
    assert clean.returncode == 0, clean.stderr
    assert "warning" not in clean.stderr

    status = run_cli("status", env=data_env)
    assert status.returncode == 0, status.stderr
    _assert_no_secret(status.stdout)
    assert "rtsp://admin:***@10.1.1.1/live" in status.stdout and "snap.cgi?user=***&passwd=***" in status.stdout


def test_config_apply_warns_about_literal_secrets(data_env: dict[str, str], tmp_path: Path) -> None:
    park = tmp_path / "park.yaml"
    park.write_text(
        "sites:\n"
        "  - name: north\n"
        "    cameras:\n"
        f"      - {{name: gate, source: '{HASH_PASSWORD}'}}\n"
        f"      - {{name: snap, source: '{QUERY_PASSWORD}'}}\n"
        "      - {name: lake, source: 'rtsp://admin:${CAM_PW}@10.1.1.3/live'}\n"
        "models: []\n",
        encoding="utf-8",
    )
    assert run_cli("init", env=data_env).returncode == 0
    out = run_cli("config", "apply", str(park), env=data_env)
    assert out.returncode == 0, out.stderr
    _assert_no_secret(out.stdout, out.stderr)
    assert "warning: camera north/gate: the source holds a literal password" in out.stderr
    assert "warning: camera north/snap: the source holds a literal query value of 'passwd'" in out.stderr
    assert "north/lake" not in out.stderr
    assert "created camera north/gate" in out.stdout


def test_last_error_and_status_are_redacted(
    factory: sessionmaker[Session], data_env: dict[str, str], tmp_path: Path
) -> None:
    with factory.begin() as session:
        site = add_site(session, "north", actor="test")
        hashed = add_camera(session, site, "gate", "rtsp://admin:pa#ssw0rd@127.0.0.1:1/stream", interval_s=5).id
        queried = add_camera(session, site, "snap", "rtsp://127.0.0.1:1/live?user=admin&passwd=hunter2", interval_s=5).id
        # A row written before this fix (or by a tool that stored the raw FFmpeg line).
        old = add_camera(session, site, "old", "rtsp://10.1.1.9/live", interval_s=5)
        old.last_error = f"[rtsp @ 0x5] method DESCRIBE failed for {HASH_PASSWORD}: 401 Unauthorized"
    store = FrameStore(tmp_path / "frames")
    assert sample_camera(factory, store, hashed) is Outcome.FAILED  # nothing listens on port 1
    assert sample_camera(factory, store, queried) is Outcome.FAILED
    with factory() as session:
        errors = {c.name: c.last_error or "" for c in session.query(Camera)}
        rows = camera_health(session, now=utcnow())
    _assert_no_secret(errors["gate"], errors["snap"])
    assert "rtsp://admin:***@127.0.0.1:1/stream" in errors["gate"]
    assert "rtsp://127.0.0.1:1/live?user=***&passwd=***" in errors["snap"]
    _assert_no_secret(*(f"{r.source} {r.last_error}" for r in rows))  # the dashboard's Cameras page

    status = run_cli("status", env=data_env)
    assert status.returncode == 0, status.stderr
    _assert_no_secret(status.stdout)
    assert "last error: cannot open rtsp://admin:***@127.0.0.1:1/stream" in status.stdout
    assert "DESCRIBE failed for rtsp://admin:***@10.1.1.1/live: 401" in status.stdout
