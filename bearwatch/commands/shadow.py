"""`bearwatch` subcommands of the shadow part: verdicts, the review queue, alerts and
their channels, promotion/demotion and the ledger, the shadow loop, the training export.

Commands import what they need inside them: the CLI's start-up rule (bearwatch.cli_common).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from bearwatch.cli_common import open_database as _database
from bearwatch.cli_common import progress, serve_metrics, stop_on_signals
from bearwatch.errors import GateNotPassed
from bearwatch.localtime import local_text
from bearwatch.schema import AlertStatus, Stage, Verdict

if TYPE_CHECKING:
    from datetime import datetime

    from sqlalchemy.orm import Session

UserOption = Annotated[
    str, typer.Option("--user", envvar="BEARWATCH_USER", help="who is acting (default: $BEARWATCH_USER); a registered user")
]


def _now() -> datetime:
    from bearwatch.schema import utcnow

    return utcnow()


def verdict(
    frame_id: Annotated[int, typer.Argument(help="the frame's id")],
    decision: Annotated[Verdict, typer.Argument(help="confirm | dismiss | missed")],
    user: UserOption,
    note: Annotated[str | None, typer.Option("--note", help="free text kept with the verdict")] = None,
) -> None:
    """Record a ranger's verdict on a frame (and send, hold or suppress its alert)."""
    from bearwatch.auth import actor_for_user
    from shadow.alert_rules import EFFECT_TEXT
    from shadow.verdicts import submit_verdict

    with _database() as factory:
        with factory() as session:
            actor = actor_for_user(session, user)
        result = submit_verdict(factory, frame_id, actor, decision, _now(), note=note)
    what = EFFECT_TEXT[result.effect]
    state = "recorded" if result.recorded else "already recorded (no change)"
    alert = f" (alert {result.alert_id})" if result.alert_id else ""
    typer.echo(f"frame {frame_id}: {decision.value} by {user} {state}; {what}{alert}")


def undo_verdict(user: UserOption) -> None:
    """Undo your last verdict if it is less than 60 s old and its alert has not gone out."""
    from bearwatch.auth import actor_for_user
    from shadow.verdicts import undo_last_verdict

    with _database() as factory:
        with factory() as session:
            actor = actor_for_user(session, user)
        result = undo_last_verdict(factory, actor, _now())
    typer.echo(f"frame {result.frame_id}: {result.verdict.value} undone; {result.reverted}")


def _known_site(session: Session, site: str | None) -> None:
    """A --site that names no site is an error (exit 2, the known sites listed), not an
    empty listing that reads like "nothing here"."""
    if site is not None:
        from shadow.sites import get_site

        get_site(session, site)


def review(
    user: UserOption,
    site: Annotated[str | None, typer.Option("--site", help="one site only")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1)] = 20,
) -> None:
    """The frames waiting for this ranger: held alerts, flagged frames, the audit sample."""
    from bearwatch.auth import actor_for_user
    from shadow.review_queue import QueueReason, review_queue
    from shadow.sites import site_zones

    with _database() as factory, factory() as session:
        _known_site(session, site)
        items = review_queue(session, actor_for_user(session, user), _now(), site=site, limit=limit)
        zones = site_zones(session)
    for i in items:
        score = "-" if i.model_score is None else f"{i.model_score:.2f}"
        # audit items name their stratum and its rate: "audit/near@10%"
        why = f"audit/{i.stratum}@{i.inclusion_prob * 100:.3g}%" if i.reason is QueueReason.AUDIT and i.stratum else i.reason.value
        typer.echo(f"frame {i.frame_id} {i.site}/{i.camera} {local_text(i.captured_at, zones.get(i.site), seconds=True)} {why} "
                   f"{i.model_label or '-'} {score}: {i.on_confirm}")
    if not items:
        typer.echo("nothing to review")


def alerts(
    site: Annotated[str | None, typer.Option("--site", help="one site only")] = None,
    status: Annotated[list[AlertStatus] | None, typer.Option("--status", help="pending|queued|sent|suppressed|dead (repeatable)")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1)] = 50,
) -> None:
    """List alerts, newest first."""
    from shadow.alerts import list_alerts
    from shadow.sites import site_zones

    with _database() as factory, factory() as session:
        _known_site(session, site)
        rows = list_alerts(session, site=site, statuses=status, limit=limit)
        zones = site_zones(session)
    for a in rows:
        sent = f", sent {local_text(a.delivered_at, zones.get(a.site), seconds=True, date=False)}" if a.delivered_at else ""
        error = f", last error: {a.last_error}" if a.last_error and a.status is not AlertStatus.SENT else ""
        typer.echo(f"alert {a.id} {a.site}/{a.camera} frame {a.frame_id} {local_text(a.created_at, zones.get(a.site), seconds=True)} "
                   f"{a.stage.value} {a.status.value} from {a.source.value}, {a.flag_count} flag(s){sent}{error}")
    if not rows:
        typer.echo("no alerts")


def channels() -> None:
    """List alert channels (webhook URLs shown without their secrets)."""
    import sqlalchemy as sa

    from bearwatch.schema import AlertChannel, ChannelKind
    from shadow.delivery import shown_url

    with _database() as factory, factory() as session:
        rows = list(session.scalars(sa.select(AlertChannel).order_by(AlertChannel.name)))
    for c in rows:
        kind = f"{c.kind.value} ({c.format.value})" if c.kind is ChannelKind.WEBHOOK else c.kind.value
        typer.echo(f"channel {c.name}: {kind} {shown_url(c.url)}, sites {', '.join(c.sites or []) or 'all'}, "
                   f"{'enabled' if c.enabled else 'disabled'}")
    if not rows:
        typer.echo("no alert channels; add them under alerts.channels in the park file")


def promote(
    site: str,
    reason: Annotated[str, typer.Option("--reason", help="why; kept in the ledger")],
    user: UserOption,
    override: Annotated[bool, typer.Option("--override", help="admin only: promote although the gate does not pass")] = False,
    cameras: Annotated[str | None, typer.Option("--cameras", help="limited trial: camera names, comma-separated")] = None,
    hours: Annotated[str | None, typer.Option("--hours", help="limited trial: UTC hours, e.g. 20-6 or 8,9,12-14")] = None,
    from_stage: Annotated[Stage | None, typer.Option(
        "--from", help="the stage you expect the site to be in; refused if it changed since")] = None,
) -> None:
    """Promote a site to its next stage if its gate passes (ops); exit 2 with the failing checks if not."""
    from bearwatch.auth import actor_for_user
    from bearwatch.db import write_transaction
    from shadow.promotion import TrialScope, parse_hours
    from shadow.promotion import promote as promote_site

    scope = None
    if cameras is not None or hours is not None:
        names = tuple(c.strip() for c in (cameras or "").split(",") if c.strip())
        scope = TrialScope(cameras=names, hours=parse_hours(hours) if hours else ())
    with _database() as factory:
        try:
            with write_transaction(factory) as session:
                change = promote_site(session, site, actor_for_user(session, user), reason, _now(), override=override,
                                      scope=scope, expected_stage=from_stage)
                to_stage, evidence = change.to_stage, change.evidence
        except GateNotPassed as refused:
            typer.echo(f"error: {refused} (--override --reason ...)", err=True)
            for line in refused.lines:
                typer.echo(f"  {line}", err=True)
            raise typer.Exit(2) from None
    trial = evidence.get("trial")
    window = f"; trial {trial['start'][:16]}Z .. {trial['end'][:16]}Z" if trial else ""
    typer.echo(f"site {site} promoted to {to_stage.value}{' (override)' if override else ''}{window}")


def demote(
    site: str,
    to: Annotated[Stage, typer.Option("--to", help="manual or limited")],
    reason: Annotated[str, typer.Option("--reason", help="why; kept in the ledger")],
    user: UserOption,
) -> None:
    """Demote a site to a lower stage (ops; always allowed)."""
    from bearwatch.auth import actor_for_user
    from bearwatch.db import write_transaction
    from shadow.promotion import demote as demote_site

    with _database() as factory, write_transaction(factory) as session:
        change = demote_site(session, site, to, actor_for_user(session, user), reason, _now())
        typer.echo(f"site {site} demoted from {change.from_stage.value if change.from_stage else '-'} to {change.to_stage.value}")


def ledger(site: Annotated[str | None, typer.Option("--site", help="one site only")] = None) -> None:
    """The rollout ledger: every stage change, newest first."""
    from shadow.promotion import ledger as read_ledger
    from shadow.sites import site_zones

    with _database() as factory, factory() as session:
        _known_site(session, site)
        rows = read_ledger(session, site)
        zones = site_zones(session)
    for r in rows:
        gate = r.evidence.get("gate")
        extra = f", gate {gate.get('outcome')}" if isinstance(gate, dict) else ""
        extra += ", OVERRIDE" if r.evidence.get("override") else ""
        model = f", model {r.model_version_id}" if r.model_version_id else ""
        typer.echo(f"{local_text(r.changed_at, zones.get(r.site), seconds=True)} {r.site}: {r.from_stage.value if r.from_stage else '-'} -> "
                   f"{r.to_stage.value} by {r.actor}{model}{extra}: {r.reason}")
    if not rows:
        typer.echo("no stage changes")


def shadow(
    interval: Annotated[float, typer.Option("--interval", min=0.05, help="seconds between rounds of the jobs")] = 1.0,
    metrics_port: Annotated[int | None, typer.Option("--metrics-port", help="serve /metrics on this port")] = None,
    guard_every: Annotated[float, typer.Option("--guard-every", min=1, help="seconds between guard runs")] = 60.0,
    drift_every: Annotated[float, typer.Option("--drift-every", min=1, help="seconds between stored drift checks")] = 3600.0,
    retention_days: Annotated[float | None, typer.Option("--retention-days", min=0, help="delete frames older than this (evidence is kept); hourly")] = None,
    embedding_days: Annotated[float | None, typer.Option("--embedding-days", min=2, help="thin the embeddings of frames older than this to drift's sample (2% kept); hourly")] = None,
    sweep_every: Annotated[float, typer.Option("--sweep-every", min=1, help="seconds between frame-store sweep passes (orphan files and rows; each pass checks the next share of the store)")] = 60.0,
) -> None:
    """Run the shadow loop until SIGTERM: new flags -> alerts, the alert outbox, the
    guard, the drift checks and frame-store housekeeping (only the leader runs them)."""
    from bearwatch.heartbeat import HeartbeatWriter
    from bearwatch.partitions import ensure_partitions
    from bearwatch.settings import load_settings
    from ingest.store import FrameStore
    from ingest.sweeper import SweepCursor, retain, sweep
    from shadow.delivery import DeliveryPolicy
    from shadow.embedding_retention import thin_embeddings
    from shadow.loop import HOUSEKEEPING_LANE, Job, measurement_jobs, run_shadow_loop

    settings = load_settings()
    store = FrameStore(settings.frames_dir)
    policy = DeliveryPolicy(senders=settings.alert_senders, timeout_s=settings.alert_timeout_s,
                            max_delay_s=settings.alert_retry_cap_s)
    lane = HOUSEKEEPING_LANE
    cursor = SweepCursor()  # a pass's work is bounded; the whole store is covered pass by pass
    housekeeping = [Job("sweep", lambda factory, now: sweep(factory, store, now=now, cursor=cursor), every_s=sweep_every,
                        lane=lane),
                    # PostgreSQL's frame partitions, made ahead (a no-op elsewhere)
                    Job("partitions", lambda factory, now: ensure_partitions(factory), every_s=3600.0, lane=lane)]
    if retention_days is not None:
        housekeeping.append(Job("retention", lambda factory, now: retain(factory, store, days=retention_days, now=now),
                                every_s=3600.0, lane=lane))
    if embedding_days is not None:
        housekeeping.append(Job("embeddings", lambda factory, now: thin_embeddings(factory, days=embedding_days, now=now),
                                every_s=3600.0, lane=lane))

    with _database() as factory:
        serve_metrics(metrics_port, "shadow")
        stop = stop_on_signals()
        run_shadow_loop(
            factory, stop, interval_s=interval, echo=typer.echo, heartbeat=HeartbeatWriter(factory, "shadow"), policy=policy,
            frames_dir=settings.frames_dir,
            extra_jobs=[*measurement_jobs(guard_every_s=guard_every, drift_every_s=drift_every), *housekeeping],
        )


def export_dataset(
    directory: Annotated[Path, typer.Argument(help="where to write DIR/<label>/*.jpg and manifest.csv")],
    site: Annotated[str | None, typer.Option("--site", help="one site only")] = None,
    force: Annotated[bool, typer.Option("--force", help="write into a non-empty directory")] = False,
) -> None:
    """Write reviewed frames as a training set, one folder per label (fastai parent_label)."""
    from bearwatch.settings import load_settings
    from shadow.export import count_reviewed
    from shadow.export import export_dataset as run_export

    settings = load_settings()
    with _database() as factory, factory() as session:
        _known_site(session, site)
        with progress("exporting reviewed frames", count_reviewed(session, site), "frames") as advance:
            report = run_export(session, settings.frames_dir, directory, site=site, force=force, progress=advance)
    counts = ", ".join(f"{label} {n}" for label, n in sorted(report.per_label.items())) or "nothing reviewed yet"
    typer.echo(f"exported {report.written} frames to {directory} ({counts}); manifest {report.manifest}")
    for problem in report.skipped:
        typer.echo(f"skipped: {problem}", err=True)


def register(app: typer.Typer) -> None:
    app.command()(verdict)
    app.command("undo-verdict")(undo_verdict)
    app.command()(review)
    app.command()(alerts)
    app.command()(channels)
    app.command()(promote)
    app.command()(demote)
    app.command()(ledger)
    app.command()(shadow)
    app.command("export-dataset")(export_dataset)
