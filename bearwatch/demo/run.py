"""`bearwatch demo`: a demo park on the embedded SQLite default, run end to end.

Footage and model are made on this machine once and cached under the data dir; the
park (two sites, four cameras on the footage, the demo model) is applied from a
generated park file, then ingest, the inference worker and the dashboard run.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import sqlalchemy as sa
import yaml
from sqlalchemy.orm import Session, sessionmaker

from bearwatch.config import load_config
from bearwatch.db import make_engine, session_factory
from bearwatch.demo.footage import DEMO_CAMERAS, ensure_demo_footage
from bearwatch.demo.model import TRAIN_DIR_NAME, ensure_demo_model
from bearwatch.migrations import upgrade_to_head
from bearwatch.park import apply_config
from bearwatch.schema import Frame, FrameStatus, Prediction, utcnow
from bearwatch.settings import Settings
from ingest.scheduler import start_ingest
from ingest.store import FrameStore
from inference.worker import InferenceWorker, WorkerOptions

DEMO_INTERVAL_S = 2.0
DRAIN_TIMEOUT_S = 15.0  # at the end, let the worker score what was just captured
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
    }
    path = directory / "park.yaml"
    path.write_text(yaml.safe_dump(park, sort_keys=False), encoding="utf-8")
    return path


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


def _drain(factory: sessionmaker[Session], *, stop_requested: threading.Event, timeout_s: float) -> None:
    """Wait (bounded) for the frames still queued; a second Ctrl-C is not needed."""
    if stop_requested.is_set():
        return
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with factory() as session:
            waiting = session.scalar(
                sa.select(sa.func.count()).where(Frame.status.in_([FrameStatus.PENDING, FrameStatus.CLAIMED]))
            )
        if not waiting:
            return
        time.sleep(0.5)


def run_demo(
    settings: Settings, *, duration_s: float | None, with_dashboard: bool, echo: Callable[[str], None] = print
) -> DemoSummary:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.database_url)
    factory = session_factory(engine)
    upgrade_to_head(engine)
    echo("preparing demo footage and model (made once, cached under the data dir)...")
    footage = ensure_demo_footage(settings.demo_dir / "footage", DEMO_CAMERAS)
    model_path = ensure_demo_model(settings.demo_dir / "model")
    park_file = write_demo_park(settings.demo_dir, footage, model_path, model_path.parent / TRAIN_DIR_NAME)
    with factory.begin() as session:
        apply_config(session, load_config(park_file), actor="demo")

    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    started = utcnow()
    scheduler = start_ingest(factory, FrameStore(settings.frames_dir))
    worker = threading.Thread(
        target=InferenceWorker(factory, settings.frames_dir, WorkerOptions(batch_size=16)).run, args=(stop,),
        name="inference", daemon=True,
    )
    worker.start()
    dashboard = None
    if with_dashboard:
        from bearwatch.dashboard_server import dashboard_url, serve_dashboard

        dashboard = serve_dashboard(settings)
        echo(f"dashboard: {dashboard_url(settings)}")
    echo("demo running" + (f" for {duration_s:g}s" if duration_s else "; Ctrl-C to stop"))
    try:
        deadline = time.monotonic() + duration_s if duration_s else None
        while not stop.is_set() and (deadline is None or time.monotonic() < deadline):
            stop.wait(0.5)
    finally:
        scheduler.shutdown(wait=True)
        _drain(factory, stop_requested=stop, timeout_s=DRAIN_TIMEOUT_S)
        stop.set()
        worker.join(timeout=60)
        if dashboard is not None:
            dashboard.terminate()
            dashboard.wait(timeout=20)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    summary = summarize(factory, started)
    engine.dispose()
    return summary
