"""`bearwatch ingest` (the sampling worker) and `bearwatch frames sweep|retain`.

Commands import what they need inside them: the CLI's start-up rule (bearwatch.cli_common).
"""

from __future__ import annotations

from typing import Annotated

import typer

from bearwatch.cli_common import open_database, serve_metrics, stop_on_signals


def register(app: typer.Typer) -> None:
    app.command("ingest")(ingest)
    frames_app = typer.Typer(help="Maintain the frame store: orphans and retention.", no_args_is_help=True)
    frames_app.command("sweep")(frames_sweep)
    frames_app.command("retain")(frames_retain)
    app.add_typer(frames_app, name="frames")


def ingest(
    metrics_port: Annotated[int | None, typer.Option("--metrics-port", help="serve /metrics on this port")] = None,
    lease: Annotated[float, typer.Option("--lease", min=1, help="seconds a claimed camera stays ours without a heartbeat")] = 30.0,
    threads: Annotated[int, typer.Option("--threads", min=1, help="capture threads")] = 32,
    capture_processes: Annotated[int | None, typer.Option("--capture-processes", min=1, help="child processes for RTSP/device captures (default: sized from the cameras held and their capture times)")] = None,
    capture_timeout: Annotated[float, typer.Option("--capture-timeout", min=0.1, help="open/read deadline per sample, seconds")] = 10.0,
    backoff_cap: Annotated[float, typer.Option("--backoff-cap", min=0.1, help="longest wait before reconnecting, seconds")] = 60.0,
) -> None:
    """Sample the cameras (shared with other workers on PostgreSQL) until SIGTERM/Ctrl-C."""
    from bearwatch.heartbeat import HeartbeatWriter
    from bearwatch.settings import load_settings
    from ingest.leases import single_ingest_lock
    from ingest.sampler import SamplerOptions
    from ingest.scheduler import IngestOptions, IngestService
    from ingest.sources import camera_tls_context
    from ingest.store import FrameStore

    settings = load_settings()
    options = IngestOptions(
        lease_s=lease, threads=threads, capture_processes=capture_processes,
        sampler=SamplerOptions(capture_timeout_s=capture_timeout, backoff_cap_s=backoff_cap,
                               tls=camera_tls_context(settings.camera_ca_file)),
    )
    with single_ingest_lock(settings.database_url), open_database() as factory:
        serve_metrics(metrics_port, "ingest")
        stop = stop_on_signals()
        service = IngestService(factory, FrameStore(settings.frames_dir), options).start()
        heartbeat = HeartbeatWriter(factory, "ingest")
        typer.echo(f"ingest worker {service.owner}: sampling {len(service.cameras())} cameras; Ctrl-C to stop", err=True)
        try:
            done = service.samples_done
            while not stop.wait(1.0):
                heartbeat.beat(progressed=service.samples_done > done, waiting=service.busy_cameras())
                done = service.samples_done
        finally:
            service.stop()
            heartbeat.stopped()
        typer.echo("ingest stopped; camera leases released", err=True)


def frames_sweep(
    grace: Annotated[float, typer.Option("--grace", min=0, help="leave files younger than this many seconds")] = 600.0,
) -> None:
    """Remove files without rows and rows without files (evidence rows are marked, not deleted)."""
    from bearwatch.schema import utcnow
    from bearwatch.settings import load_settings
    from ingest.store import FrameStore
    from ingest.sweeper import sweep

    settings = load_settings()
    with open_database() as factory:
        report = sweep(factory, FrameStore(settings.frames_dir), now=utcnow(), grace_s=grace)
    typer.echo(
        f"removed {report.files_removed} files without rows, {report.rows_removed} rows without files; "
        f"marked {report.rows_marked} evidence rows whose file is missing"
    )


def frames_retain(
    days: Annotated[float, typer.Option("--days", min=0, help="delete frames captured more than this many days ago")],
) -> None:
    """Delete old frames, keeping those a decision, alert or stage change refers to."""
    from bearwatch.schema import utcnow
    from bearwatch.settings import load_settings
    from ingest.store import FrameStore
    from ingest.sweeper import retain

    settings = load_settings()
    with open_database() as factory:
        report = retain(factory, FrameStore(settings.frames_dir), days=days, now=utcnow())
    typer.echo(f"deleted {report.frames_deleted} frames older than {days:g} days; kept {report.kept_as_evidence} as evidence")
