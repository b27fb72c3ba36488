"""`bearwatch demo`: a demo park on the embedded SQLite default, run end to end.

Footage and model are made on this machine once and cached under the data dir; the
park (two live sites in manual, four cameras on the footage, the demo model, a log
alert channel) is applied from a generated park file, a third site gets three weeks
of simulated history that took it further along, then everything runs as supervised
child processes, exactly as `bearwatch run` does.
"""

from __future__ import annotations

import secrets
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import sqlalchemy as sa
import yaml
from sqlalchemy.orm import Session, sessionmaker

from bearwatch.commands.run import child_specs, run_supervised
from bearwatch.dashboard_server import dashboard_url
from bearwatch.db import make_engine, session_factory, write_transaction
from bearwatch.demo.footage import DEMO_CAMERAS, ensure_demo_footage
from bearwatch.demo.model import TRAIN_DIR_NAME, ensure_demo_model
from bearwatch.demo.simulate import SimSpec, create_site, simulate_rollout
from bearwatch.errors import BearwatchError
from bearwatch.migrations import upgrade_to_head
from bearwatch.park_apply import apply_park
from bearwatch.park_file import Thresholds, load_config
from bearwatch.schema import (
    Alert,
    AlertStatus,
    Frame,
    FrameQueueEntry,
    FrameStatus,
    ModelVersion,
    Prediction,
    Role,
    Site,
    User,
    utcnow,
)
from bearwatch.settings import Settings
from bearwatch.supervisor import Supervisor
from bearwatch.users import add_user

DEMO_INTERVAL_S = 2.0
DRAIN_TIMEOUT_S = 60.0  # at the end, let the worker score what was just captured (returns as soon as it has)
HISTORY_SITE = "meadow"
HISTORY_DAYS = 21
# Three cameras, a frame every 15 minutes, a good model, rangers who err as rangers do: a
# pilot site whose rangers audited every unflagged frame (the only way one week of
# sightings can show a recall of 0.9; the gate says so on the other sites) and whose
# cooldown spans one frame interval. Its gates pass after about a week of shadow and a
# week of trial, so the site ends in expanded.
HISTORY_SPEC = SimSpec(seed=7, cameras=3, model_recall=0.999, night_recall_factor=1.0, model_precision=0.9,
                       image_size=(320, 240), scenes=True)  # what a newcomer reviews first: camera-size scenes
HISTORY_THRESHOLDS = Thresholds(alert_cooldown_s=900, audit_rate=1.0, audit_near_rate=1.0)
# Cameras are grouped into sites by the first word of their name ("north-creek" -> "north").


@dataclass(frozen=True)
class DemoSummary:
    sampled: int
    scored: int
    flagged: int
    failed: int


def write_demo_park(directory: Path, footage: dict[str, Path], model_path: Path, reference_dir: Path) -> Path:
    sites: dict[str, list[dict[str, object]]] = {}
    for name, path in footage.items():
        sites.setdefault(name.split("-", 1)[0], []).append(
            {"name": name, "source": str(path.resolve()), "interval": DEMO_INTERVAL_S}
        )
    park = {
        "sites": [{"name": site, "cameras": cameras} for site, cameras in sites.items()],
        "models": [{"name": "demo-bear", "path": str(model_path.resolve()), "positive": ["bear"],
                    "threshold": 0.5, "reference": str(reference_dir.resolve()), "sites": list(sites)}],
        "alerts": {"channels": [{"name": "demo-log", "kind": "log"}]},  # alerts are printed in the log
    }
    path = directory / "park.yaml"
    path.write_text(yaml.safe_dump(park, sort_keys=False), encoding="utf-8")
    return path


def ensure_demo_user(session: Session) -> str:
    """The dashboard needs a login: on a park without users, an admin `demo` with a
    fresh random password (printed once; change it with `bearwatch user passwd demo`)."""
    if session.scalar(sa.select(sa.func.count()).select_from(User)):
        return "dashboard login: a user from `bearwatch user list`"
    password = secrets.token_urlsafe(12)
    add_user(session, "demo", Role.ADMIN, password)
    return f"dashboard login: user demo, password {password}"


def summarize(factory: sessionmaker[Session], since: datetime) -> DemoSummary:
    with factory() as session:
        sampled = session.scalar(sa.select(sa.func.count()).where(Frame.captured_at >= since)) or 0
        failed = session.scalar(
            sa.select(sa.func.count()).where(Frame.captured_at >= since, Frame.status == FrameStatus.FAILED)
        ) or 0
        scored, flagged = session.execute(
            sa.select(sa.func.count(sa.distinct(Prediction.frame_id)), sa.func.count().filter(Prediction.flagged))
            .join(Frame, Frame.id == Prediction.frame_id)
            .where(Frame.captured_at >= since)
        ).one()
    return DemoSummary(sampled=sampled, scored=scored or 0, flagged=flagged or 0, failed=failed)


def _drain(factory: sessionmaker[Session], timeout_s: float) -> None:
    """Wait (bounded) for the frames still queued to be scored."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with factory() as session:
            waiting = session.scalar(sa.select(sa.func.count()).select_from(FrameQueueEntry))
        if not waiting:
            return
        time.sleep(0.5)


def seed_history(session: Session, frames_root: Path, now: datetime, echo: Callable[[str], None]) -> None:
    """A third site, `meadow`, with three weeks of recorded history replayed by the
    simulator (frames, the demo model's flags, ranger verdicts, alerts), promoted by its
    gates as ops would: the demo shows a site further along than manual. Its cameras are
    replays, so they are disabled for live sampling."""
    if session.scalar(sa.select(Site.id).where(Site.name == HISTORY_SITE)) is not None:
        return
    model = session.scalar(sa.select(ModelVersion).where(ModelVersion.name == "demo-bear").order_by(ModelVersion.id.desc()))
    start = now - timedelta(days=HISTORY_DAYS)
    site = create_site(session, HISTORY_SITE, HISTORY_SPEC, start, frames_root, HISTORY_THRESHOLDS, model=model)
    events = simulate_rollout(session, site, HISTORY_SPEC, start, HISTORY_DAYS, frames_root, actor="ops (demo history)")
    for camera in site.cameras:
        camera.enabled = False
    # History's alerts went out at the time; the live outbox must not send them again.
    session.execute(
        sa.update(Alert).where(Alert.site_id == site.id, Alert.status == AlertStatus.QUEUED)
        .values(status=AlertStatus.SENT, delivered_at=Alert.created_at)
    )
    for event in events:
        echo(f"  {HISTORY_SITE} {event.at:%Y-%m-%d}: {event.what} ({event.detail})")
    echo(f"site {HISTORY_SITE}: {HISTORY_DAYS} days of history replayed; now {site.stage.value}")


def _free_port_run(start: int, count: int = 3) -> int:
    """The first of ``count`` free consecutive loopback ports from ``start``."""
    base = start
    while base < 65000:
        try:
            for port in range(base, base + count):
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", port))
            return base
        except OSError:
            base += count
    raise BearwatchError("no free ports for the metrics endpoints")


def run_demo(
    settings: Settings, *, duration_s: float | None, with_dashboard: bool, echo: Callable[[str], None] = print
) -> DemoSummary:
    """Prepare the demo park, then run it through `bearwatch run`'s supervisor: the shadow
    loop, the inference worker, ingest and the dashboard as child processes."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.database_url)
    factory = session_factory(engine)
    upgrade_to_head(engine)
    echo("preparing demo footage and model (made once, cached under the data dir)...")
    footage = ensure_demo_footage(settings.demo_dir / "footage", DEMO_CAMERAS)
    model_path = ensure_demo_model(settings.demo_dir / "model", echo)
    park_file = write_demo_park(settings.demo_dir, footage, model_path, model_path.parent / TRAIN_DIR_NAME)
    apply_park(factory, load_config(park_file), actor="demo")
    with write_transaction(factory) as session:
        login = ensure_demo_user(session)
        seed_history(session, settings.frames_dir, utcnow(), echo)

    base_port = _free_port_run(9101, count=4)
    specs = child_specs(base_port, with_dashboard=with_dashboard, infer_args=["--batch-size", "16"])
    if with_dashboard:
        echo(f"dashboard: {dashboard_url(settings)}")
        echo(login)
    echo(f"metrics: http://127.0.0.1:{base_port}/metrics (ingest), :{base_port + 1} (inference), :{base_port + 2} (shadow)"
         + (f", :{base_port + 3} (dashboard)" if with_dashboard else ""))
    echo("demo running" + (f" for {duration_s:g}s" if duration_s else "; Ctrl-C to stop"))

    def drain(supervisor: Supervisor, by_signal: bool) -> None:
        if not by_signal:  # a timed demo: stop sampling, let the worker score what was captured
            supervisor.stop_child("ingest")
            _drain(factory, DRAIN_TIMEOUT_S)

    started = utcnow()
    run_supervised(specs, duration_s=duration_s, before_shutdown=drain)
    summary = summarize(factory, started)
    with factory() as session:
        for name, stage in session.execute(sa.select(Site.name, Site.stage).order_by(Site.name)):
            echo(f"site {name}: {stage.value}")
    engine.dispose()
    return summary
