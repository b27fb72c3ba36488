"""The `bearwatch` command. Settings are read here, once, and passed down.

Commands import what they need inside them: the CLI's start-up rule (bearwatch.cli_common).
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Literal

import typer

from bearwatch.cli_common import cli_actor as _actor
from bearwatch.cli_common import open_database as _database
from bearwatch.cli_common import serve_metrics, stop_on_signals
from bearwatch.errors import BearwatchError
from bearwatch.schema import ModelRole
from inference import TRUST_WARNING

app = typer.Typer(
    help="bearwatch: staged rollout of a bear detector on park cameras.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,  # locals can hold camera credentials
)
config_app = typer.Typer(help="Check and apply the park configuration file.", no_args_is_help=True)
site_app = typer.Typer(help="Manage sites.", no_args_is_help=True)
camera_app = typer.Typer(help="Manage cameras.", no_args_is_help=True)
model_app = typer.Typer(help="Manage model versions.", no_args_is_help=True)
app.add_typer(config_app, name="config")
app.add_typer(site_app, name="site")
app.add_typer(camera_app, name="camera")
app.add_typer(model_app, name="model")


@app.command()
def init() -> None:
    """Create the data directory and create or upgrade the database schema to head."""
    from bearwatch.db import make_engine
    from bearwatch.migrations import current_revision, head_revision, upgrade_to_head
    from bearwatch.settings import load_settings

    settings = load_settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    settings.frames_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.database_url)
    try:
        upgrade_to_head(engine)
        typer.echo(f"data dir {settings.data_dir.resolve()}")
        typer.echo(f"database {engine.url.render_as_string(hide_password=True)} at revision {current_revision(engine)} (head {head_revision()})")
    finally:
        engine.dispose()


@config_app.command("validate")
def config_validate(file: Annotated[Path, typer.Argument(help="park YAML file")]) -> None:
    """Check a park file; print every problem with where it is; exit 1 if any."""
    from bearwatch.park_file import check_config_text

    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise BearwatchError(f"cannot read {file}: {exc.strerror}") from None
    config, problems = check_config_text(text)
    if problems:
        for problem in problems:
            typer.echo(f"{file}:{problem}", err=True)
        typer.echo(f"{len(problems)} problem(s) in {file}", err=True)
        raise typer.Exit(1)
    assert config is not None
    cameras = sum(len(s.cameras) for s in config.sites)
    typer.echo(f"{file}: ok ({len(config.sites)} sites, {cameras} cameras, {len(config.models)} models)")


@config_app.command("apply")
def config_apply(file: Annotated[Path, typer.Argument(help="park YAML file")]) -> None:
    """Create or update the sites, cameras and models a park file describes."""
    from bearwatch.park_apply import apply_park
    from bearwatch.park_file import load_config

    config = load_config(file)
    _warn_literal_secrets((f"{site.name}/{cam.name}", cam.source) for site in config.sites for cam in site.cameras)
    with _database() as factory:
        report = apply_park(factory, config, actor=_actor())
    for line in report.created:
        typer.echo(f"created {line}")
    for line in report.updated:
        typer.echo(f"updated {line}")
    if not report.created and not report.updated:
        typer.echo("nothing to change")


@site_app.command("add")
def site_add(name: str) -> None:
    """Add a site; it starts in the manual stage."""
    from bearwatch.db import write_transaction
    from shadow.sites import add_site

    with _database() as factory, write_transaction(factory) as session:
        site = add_site(session, name, actor=_actor())
        typer.echo(f"site {site.name} added (id {site.id}, stage {site.stage.value})")


@camera_app.command("add")
def camera_add(
    site: str,
    name: str,
    source: Annotated[str, typer.Argument(help="rtsp://, http(s)://, a video file; ${VAR} placeholders for credentials")],
    interval: Annotated[float, typer.Option("--interval", help="seconds between samples")] = 5.0,
) -> None:
    """Add a camera to a site."""
    from bearwatch.db import write_transaction
    from ingest.cameras import add_camera, describe_source
    from shadow.sites import get_site

    with _database() as factory, write_transaction(factory) as session:
        camera = add_camera(session, get_site(session, site), name, source, interval_s=interval)
        typer.echo(f"camera {site}/{camera.name} added (id {camera.id}, {describe_source(camera)}, every {interval:g}s)")
    _warn_literal_secrets([(f"{site}/{name}", source)])


def _warn_literal_secrets(cameras: Iterable[tuple[str, str]]) -> None:
    """A password written into a source sits in the database (and its backups) as is."""
    from bearwatch.redact import literal_secret_warning

    for where, source in cameras:
        if (warning := literal_secret_warning(source)) is not None:
            typer.echo(f"warning: camera {where}: {warning}", err=True)


@model_app.command("register")
def model_register(
    path: Annotated[Path, typer.Argument(help=f"a fastai export (.pkl); {TRUST_WARNING}")],
    name: Annotated[str, typer.Option("--name", help="model name")],
    positive: Annotated[list[str], typer.Option("--positive", help="class(es) that mean 'bear'")],
    threshold: Annotated[float, typer.Option("--threshold", help="flag when the positive score is at least this")] = 0.5,
    role: Annotated[ModelRole, typer.Option("--role", help="rollout or challenger")] = ModelRole.ROLLOUT,
    site: Annotated[list[str] | None, typer.Option("--site", help="make it the rollout model of this site (repeatable)")] = None,
    reference: Annotated[Path | None, typer.Option("--reference", help="folder of images like the training data, for the out-of-domain score")] = None,
) -> None:
    """Register a fastai model export (loads it once to read its classes)."""
    from bearwatch.db import write_transaction
    from bearwatch.files import sha256_file
    from bearwatch.schema import utcnow
    from inference.model_versions import refuse_registered
    from shadow.sites import get_site, set_rollout_model

    typer.echo(f"warning: {TRUST_WARNING}", err=True)

    with _database() as factory:
        if path.is_file():  # a second register of the same file says so at once, not after the load
            with factory() as session:
                refuse_registered(session, name, sha256_file(path.resolve()))
        from inference.registry import add_model, prepare_model  # torch and fastai: seconds to import

        # Loading the export (and fitting the reference) happens before the write lock is taken.
        prepared = prepare_model(path, name=name, positive=positive, threshold=threshold, role=role,
                                 reference_dir=reference, echo=lambda line: typer.echo(line, err=True))
        with write_transaction(factory) as session:
            version = add_model(session, prepared)
            for site_name in site or []:
                set_rollout_model(session, get_site(session, site_name), version, actor=_actor(), now=utcnow())
        typer.echo(
            f"model {version.name} registered (id {version.id}, classes {', '.join(version.classes)}, "
            f"positive {', '.join(version.positive_classes)}, threshold {version.threshold:g}, role {version.role.value}, "
            f"out-of-domain reference {'fitted' if version.ood_reference else 'none'})"
        )


@app.command()
def status() -> None:
    """Sites, stages, cameras and how many frames were sampled and scored."""
    from bearwatch.heartbeat import process_health
    from bearwatch.schema import utcnow
    from bearwatch.status import counts, site_statuses

    with _database() as factory, factory() as session:
        sites, totals = site_statuses(session), counts(session)
        processes = process_health(session, utcnow())
    for site in sites:
        model = site.rollout_model or "no rollout model"
        typer.echo(f"site {site.name}: {site.stage.value} since {site.stage_since:%Y-%m-%d %H:%M}Z, {model}")
        for cam in site.cameras:
            last = f"{cam.last_frame_at:%Y-%m-%d %H:%M:%S}Z" if cam.last_frame_at else "never"
            state = cam.health.value if cam.enabled else "disabled"
            error = f", last error: {cam.last_error}" if cam.last_error else ""
            sampling = f", {cam.sampling}" if cam.sampling else ""
            typer.echo(f"  camera {cam.name}: {state}, last frame {last}, every {cam.interval_s:g}s, {cam.source}{sampling}{error}")
    by_status = ", ".join(f"{k} {v}" for k, v in totals.frames_by_status.items())
    about = "about " if totals.approximate else ""  # the planner's estimate on a big PostgreSQL database
    typer.echo(f"frames {about}{totals.frames} ({by_status}); predictions {about}{totals.predictions}, "
               f"flagged {totals.flagged}; models {totals.models}")
    for proc in processes:
        detail = f", {proc.detail}" if proc.detail else ""
        typer.echo(
            f"process {proc.part} on {proc.host} pid {proc.pid}: {proc.health.value}, last beat {proc.beat_age_s:.0f}s ago, "
            f"last progress {proc.progress_age_s:.0f}s ago, {proc.waiting} waiting{detail}"
        )


@app.command()
def infer(
    batch_size: Annotated[int | None, typer.Option(
        "--batch-size", min=1, help="frames per batch at most (default by device: 64 on the CPU, 256 on CUDA)")] = None,
    device: Annotated[str, typer.Option("--device", help="auto, cpu, cuda or cuda:N")] = "auto",
    decode_threads: Annotated[int, typer.Option("--decode-threads", min=1, help="JPEG decode threads")] = 2,
    lease: Annotated[float, typer.Option("--lease", min=1, help="seconds a claimed batch stays ours")] = 120.0,
    metrics_port: Annotated[int | None, typer.Option("--metrics-port", help="serve /metrics on this port")] = None,
    preprocess: Annotated[Literal["auto", "exact", "fast"], typer.Option(
        "--preprocess", help="frame preprocessing: exact (PIL + fastai), fast (tensor decode and resize; nvJPEG on CUDA), "
             "auto (fast on CUDA, exact on the CPU)")] = "auto",
    prefetch: Annotated[int, typer.Option(
        "--prefetch", min=1, help="batches claimed and decoding ahead of the one being scored")] = 2,
    precision: Annotated[Literal["auto", "fp32", "fp16", "bf16"], typer.Option(
        "--precision", help="forward precision: auto (fp16 autocast on CUDA, fp32 on the CPU), fp32, fp16, bf16")] = "auto",
    compile_models: Annotated[bool, typer.Option(
        "--compile/--no-compile", help="torch.compile each model while it loads (minutes; before any frame)")] = False,
) -> None:
    """Run the inference worker: score new frames with every active model until SIGTERM."""
    from bearwatch.settings import load_settings
    from inference.worker import InferenceWorker, WorkerOptions

    settings = load_settings()
    options = WorkerOptions(batch_size=batch_size, lease_s=lease, decode_threads=decode_threads,
                            device=None if device == "auto" else device, preprocess=preprocess,
                            prefetch=prefetch, precision=precision, compile=compile_models)
    with _database() as factory:
        serve_metrics(metrics_port, "inference")
        stop = stop_on_signals()
        InferenceWorker(factory, settings.frames_dir, options).run(stop)


@app.command()
def demo(
    duration: Annotated[float | None, typer.Option("--duration", help="stop after this many seconds")] = None,
    dashboard: Annotated[bool, typer.Option("--dashboard/--no-dashboard", help="serve the Streamlit page")] = True,
) -> None:
    """Build the demo park (footage, model, two sites) and run it."""
    from bearwatch.demo.run import run_demo
    from bearwatch.settings import load_settings

    summary = run_demo(load_settings(), duration_s=duration, with_dashboard=dashboard, echo=typer.echo)
    typer.echo(
        f"demo summary: frames sampled {summary.sampled}, frames scored {summary.scored}, "
        f"flagged {summary.flagged}, failed {summary.failed}"
    )


@app.command("dashboard")
def dashboard_cmd() -> None:
    """Serve the Streamlit dashboard (BEARWATCH_DASHBOARD_ADDRESS / _PORT)."""
    from bearwatch.dashboard_server import run_dashboard
    from bearwatch.settings import load_settings

    settings = load_settings()
    with _database():
        pass  # refuse a database that is not at head before starting the server
    code = run_dashboard(settings)
    sys.exit(0 if code in (0, -signal.SIGTERM) else code)


# Subcommands of one part live in bearwatch/commands/<part>.py; each registers itself here
# (in this order, the order of `bearwatch --help`).
from bearwatch.commands import analytics as _analytics_commands  # noqa: E402 - registers on app, defined above
from bearwatch.commands import ingest as _ingest_commands  # noqa: E402 - registers on app, defined above
from bearwatch.commands import run as _run_commands  # noqa: E402 - registers on app, defined above
from bearwatch.commands import shadow as _shadow_commands  # noqa: E402 - registers on app, defined above
from bearwatch.commands import users as _users_commands  # noqa: E402 - registers on app, defined above

for _part in (_shadow_commands, _users_commands, _analytics_commands, _ingest_commands, _run_commands):
    _part.register(app)


def main() -> None:
    from bearwatch.logs import setup_logging
    from bearwatch.settings import load_settings

    try:
        setup_logging(load_settings().log_level)
        app()
    except BearwatchError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)
