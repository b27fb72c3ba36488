"""`bearwatch run`: the whole system on one machine, as supervised child processes.

Commands import what they need inside them: the CLI's start-up rule (bearwatch.cli_common).
"""

from __future__ import annotations

import signal
import socket
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from bearwatch.cli_common import cli_actor, open_database

if TYPE_CHECKING:
    from bearwatch.supervisor import ChildSpec, Supervisor

# Start order; shutdown goes the other way: the dashboard and ingest stop first (no new
# frames), then the inference worker finishes its batch, then the shadow loop delivers.
PARTS = ("shadow", "inference", "ingest", "dashboard")
# From a child's start to its first heartbeat: importing torch and loading the model on a
# loaded two-core machine takes a minute or two; a child silent for longer is hung.
STARTUP_DEADLINE_S = 300.0


def child_specs(
    metrics_base_port: int, *, with_dashboard: bool, infer_args: list[str], shadow_args: list[str] | None = None,
) -> list["ChildSpec"]:
    from bearwatch.supervisor import ChildSpec

    bearwatch = [sys.executable, "-m", "bearwatch"]
    specs = [
        ChildSpec("shadow", [*bearwatch, "shadow", "--metrics-port", str(metrics_base_port + 2), *(shadow_args or [])]),
        ChildSpec("inference", [*bearwatch, "infer", "--metrics-port", str(metrics_base_port + 1), *infer_args]),
        ChildSpec("ingest", [*bearwatch, "ingest", "--metrics-port", str(metrics_base_port)]),
    ]
    if with_dashboard:
        specs.append(ChildSpec("dashboard", [*bearwatch, "dashboard"],
                               env={"BEARWATCH_DASHBOARD_METRICS_PORT": str(metrics_base_port + 3)}))
    return specs


def run_supervised(
    specs: list["ChildSpec"], *, duration_s: float | None = None,
    before_shutdown: Callable[["Supervisor", bool], None] | None = None, stuck_after_s: float = 120.0,
    startup_deadline_s: float = STARTUP_DEADLINE_S,
) -> None:
    """Supervise ``specs`` until SIGTERM/SIGINT (or ``duration_s``), then stop in order.
    ``before_shutdown(supervisor, by_signal)`` runs first (the demo drains its queue)."""
    import sqlalchemy as sa

    from bearwatch.db import make_engine, session_factory, write_transaction
    from bearwatch.heartbeat import heartbeat_probe, mark_failed
    from bearwatch.settings import load_settings
    from bearwatch.supervisor import Supervisor

    settings = load_settings()
    engine = make_engine(settings.database_url)
    factory = session_factory(engine)
    host = socket.gethostname()

    stuck = heartbeat_probe(factory, host, stuck_after_s=stuck_after_s, startup_deadline_s=startup_deadline_s)

    def failed(part: str, pid: int, reason: str) -> None:
        typer.echo(f"error: {part} failed: {reason}", err=True)
        try:
            with write_transaction(factory) as session:
                mark_failed(session, part, host, pid, reason)
        except sa.exc.OperationalError:
            pass

    stop, by_signal = threading.Event(), threading.Event()

    def on_signal(*_: object) -> None:
        by_signal.set()
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    timer = threading.Timer(duration_s, stop.set) if duration_s is not None else None
    if timer is not None:
        timer.daemon = True
        timer.start()
    hook = (lambda sup: before_shutdown(sup, by_signal.is_set())) if before_shutdown is not None else None
    try:
        Supervisor(specs, stuck=stuck, on_failed=failed).run(stop, before_shutdown=hook)
    finally:
        if timer is not None:
            timer.cancel()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        engine.dispose()


def register(app: typer.Typer) -> None:
    @app.command("run")
    def run(
        park_file: Annotated[Path, typer.Argument(help="park YAML file: sites, cameras, models, alert channels")],
        metrics_base_port: Annotated[int, typer.Option("--metrics-base-port", help="ingest on this port, inference +1, shadow +2, dashboard +3")] = 9101,
        dashboard: Annotated[bool, typer.Option("--dashboard/--no-dashboard", help="serve the dashboard too")] = True,
        device: Annotated[str, typer.Option("--device", help="inference device: auto, cpu, cuda")] = "auto",
        duration: Annotated[float | None, typer.Option("--duration", help="stop after this many seconds")] = None,
        retention_days: Annotated[float | None, typer.Option("--retention-days", min=0, help="delete frames older than this (evidence is kept)")] = None,
        embedding_days: Annotated[float | None, typer.Option("--embedding-days", min=2, help="thin the embeddings of frames older than this to drift's sample (2% kept)")] = None,
        stuck_after: Annotated[float, typer.Option("--stuck-after", min=5, help="restart a child without progress (work waiting) or heartbeat for this long, seconds")] = 120.0,
        startup_deadline: Annotated[float, typer.Option("--startup-deadline", min=5, help="restart a child that has not written its first heartbeat this long after it started, seconds")] = STARTUP_DEADLINE_S,
    ) -> None:
        """Apply the park file, then run ingest, inference, the shadow loop and the dashboard as
        supervised child processes until SIGTERM or Ctrl-C."""
        from bearwatch.park_apply import apply_park
        from bearwatch.park_file import load_config

        config = load_config(park_file)
        with open_database() as factory:
            apply_park(factory, config, actor=cli_actor())
        shadow_args = ["--retention-days", f"{retention_days:g}"] if retention_days is not None else []
        shadow_args += ["--embedding-days", f"{embedding_days:g}"] if embedding_days is not None else []
        specs = child_specs(metrics_base_port, with_dashboard=dashboard, infer_args=["--device", device], shadow_args=shadow_args)
        typer.echo(f"running {', '.join(s.name for s in specs)}; metrics on ports {metrics_base_port}-{metrics_base_port + len(specs) - 1}")
        run_supervised(specs, duration_s=duration, stuck_after_s=stuck_after, startup_deadline_s=startup_deadline)
