"""`bearwatch agreement | gate | drift | drift-reference | guard | backtest`: the shadow
measurements (shadow.agreement, gates, drift, guard, backtest) from the command line.

Commands import what they need inside them: the CLI's start-up rule (bearwatch.cli_common).
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Annotated

import typer

from bearwatch.cli_common import cli_actor, open_database, progress
from bearwatch.errors import BearwatchError
from bearwatch.localtime import local_text
from bearwatch.schema import Stage
from inference import TRUST_WARNING


def _when(text: str | None, what: str) -> datetime | None:
    """An ISO date or date-time; naive means UTC."""
    if text is None:
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise BearwatchError(f"{what} {text!r} is not an ISO date or date-time (e.g. 2026-05-01 or 2026-05-01T06:00)") from None
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


def _num(x: float | None, digits: int = 3) -> str:
    if x is None or math.isnan(x):
        return "-"
    return "inf" if math.isinf(x) else f"{x:.{digits}f}"


def agreement(
    site: str,
    days: Annotated[float | None, typer.Option("--days", help="the last N days (default: since the current stage began)")] = None,
    stage: Annotated[Stage | None, typer.Option("--stage", help="the site's latest period in this stage (from the ledger)")] = None,
    misses: Annotated[int, typer.Option("--misses", help="how many misses to list")] = 20,
) -> None:
    """The rollout model against the rangers: sighting precision and recall (the unit of
    rollout decisions, design-weighted, anytime-valid bounds), the misses, and the
    frame-level confusion matrix as a secondary view."""
    from bearwatch.schema import utcnow
    from shadow.agreement import site_agreement
    from shadow.periods import stage_periods
    from shadow.sighting_evidence import site_sightings
    from shadow.sites import get_site

    now = utcnow()
    with open_database() as factory, factory() as session:
        s = get_site(session, site)
        end = now
        if stage is not None:
            periods = [p for p in stage_periods(session, s, now) if p.stage is stage]
            if not periods:
                raise BearwatchError(f"site {site} has never been in the {stage.value} stage")
            start, end = periods[-1].start, periods[-1].end
        else:
            start = now - timedelta(days=days) if days is not None else s.stage_since
        report = site_agreement(session, s, start, end)
        evidence = site_sightings(session, s, start, end)
        if report is None or evidence is None:
            raise BearwatchError(f"site {site} has no rollout model; register one with `bearwatch model register --site {site}`")
    rep = evidence.report
    typer.echo(f"site {site} ({s.stage.value}), frames captured {local_text(start, s.timezone)} to {local_text(end, s.timezone)}")
    typer.echo(f"sightings (the unit of rollout decisions): {rep.caught} caught by the model, "
               f"{len(rep.misses_found)} missed and found by the audit, {len(rep.misses_reported)} missed and reported "
               f"by rangers (not a random sample); alerts: {rep.bear_alerts} bear, {rep.false_alerts} false, "
               f"{rep.unreviewed_alerts} not reviewed yet")
    for name, est in (("sighting recall", rep.recall), ("alert precision", rep.precision)):
        typer.echo(f"{name}: {_num(est.value)} ({est.successes}/{est.n}), 95% anytime-valid bounds "
                   f"[{_num(est.low)}, {_num(est.high)}] - {est.method}")
    if rep.recall_ceiling is not None and rep.misses:
        typer.echo(f"misses found: {rep.misses} sighting(s); the window's recall is at most {_num(rep.recall_ceiling)}")
    typer.echo(f"audit: {evidence.audited_frames} unflagged frames reviewed through the design, least inclusion "
               f"probability {rep.min_inclusion:g}" + (f"; {evidence.derived_design} verdict(s) from before the design "
                                                       "was stored: probabilities derived from the audit rate in force"
                                                       if evidence.derived_design else ""))
    shown = (rep.misses_found + rep.misses_reported)[:misses]
    for m in sorted(shown, key=lambda m: m.start):
        how = "audit" if m.design_found else "reported"
        typer.echo(f"  missed sighting: camera {m.camera_id}, {local_text(m.start, s.timezone)}, {m.bear_frames} bear frame(s), "
                   f"found by {how}, first frame {m.first_frame_id}")
    c = report.confusion
    typer.echo(f"frames (secondary view, not design-weighted): reviewed {c.reviewed} (disputed, left out: {c.disputed}); "
               f"bears {c.bears}")
    typer.echo(f"             rangers: bear  not bear\nflagged          {c.tp:8d}  {c.fp:8d}\nnot flagged      {c.fn:8d}  {c.tn:8d}")
    for name, r in (("frame precision", report.precision), ("frame recall", report.recall)):
        ci = f"95% CI [{_num(r.ci.low)}, {_num(r.ci.high)}]" if r.ci else "no data"
        typer.echo(f"{name}: {_num(r.value)} ({r.successes}/{r.n}), {ci}")
    typer.echo(f"inter-ranger kappa: {_num(report.kappa)} on {report.kappa_frames} frames with two reviewers")


def gate(site: str) -> None:
    """Evaluate the gate out of the site's stage, every check (exit 0 on pass, 1 otherwise)."""
    from bearwatch.schema import utcnow
    from shadow.gates import GateOutcome, evaluate_gate
    from shadow.sites import get_site

    with open_database() as factory, factory() as session:
        result = evaluate_gate(session, get_site(session, site), utcnow())
    typer.echo(f"gate {result.from_stage.value} -> {result.to_stage.value} for {site}: {result.outcome.value.upper()}")
    for c in result.checks:
        typer.echo(f"  [{c.outcome.value:>12}] {c.name}: {c.detail}")
    raise typer.Exit(0 if result.outcome is GateOutcome.PASS else 1)


def drift(
    site: str,
    record: Annotated[bool, typer.Option("--record", help="store the check as a drift event (the gates and the guard read those)")] = False,
) -> None:
    """Drift of the last window against the reference window, metric by metric."""
    from bearwatch.db import write_transaction
    from bearwatch.schema import utcnow
    from shadow.drift import compute_drift, run_drift_check
    from shadow.sites import get_site

    now = utcnow()
    with open_database() as factory:
        if record:
            with write_transaction(factory) as session:
                check = run_drift_check(session, get_site(session, site), now)
        else:
            with factory() as session:
                check = compute_drift(session, get_site(session, site), now)
        with factory() as session:
            zone_name = get_site(session, site).timezone
    ref = f"{local_text(check.reference[0], zone_name)} to {local_text(check.reference[1], zone_name)}" if check.reference else "none"
    typer.echo(f"site {site}: window {local_text(check.window[0], zone_name)} to {local_text(check.window[1], zone_name)}, reference {ref}")
    for name, m in check.metrics.items():
        typer.echo(
            f"  {'ALARM' if m['alarm'] else 'ok':>5} {name}: {m['test']} statistic {_num(m['statistic'], 4)}, p {m['p_value']:.3g}, "
            f"min effect {m['min_effect']:g}" + (f", reference {_num(m['reference'])} -> current {_num(m['current'])}" if "reference" in m else "")
        )
    typer.echo(("DRIFT ALARM: " if check.alarm else "") + check.detail + (f" (drift event {check.event_id})" if check.event_id else ""))


def drift_reference(
    site: str,
    start: Annotated[str | None, typer.Option("--from", help="reference window start (ISO date/time, UTC)")] = None,
    end: Annotated[str | None, typer.Option("--to", help="reference window end")] = None,
    clear: Annotated[bool, typer.Option("--clear", help="back to the default: the latest manual period")] = False,
) -> None:
    """Choose the window drift is measured against (default: the latest manual period)."""
    from bearwatch.db import write_transaction
    from shadow.drift import set_reference_window
    from shadow.sites import get_site

    a, b = _when(start, "--from"), _when(end, "--to")
    window = None
    if not clear:
        if a is None or b is None or b <= a:
            raise BearwatchError("give --from and --to (to after from), or --clear")
        window = (a, b)
    with open_database() as factory, write_transaction(factory) as session:
        chosen = get_site(session, site)
        set_reference_window(chosen, window)
        zone_name = chosen.timezone
    typer.echo(f"site {site}: drift reference " + ("cleared (latest manual period)" if clear else f"{local_text(a, zone_name)} to {local_text(b, zone_name)}")
               + f" (by {cli_actor()})")


def guard() -> None:
    """Run the guard once over every site in limited or expanded; print what it did."""
    from bearwatch.schema import utcnow
    from shadow.guard import run_guard_all

    with open_database() as factory:
        results = run_guard_all(factory, utcnow())
    if not results:
        typer.echo("no site in limited or expanded: nothing to guard")
    for r in results:
        if r.demoted:
            typer.echo(f"site {r.site}: DEMOTED {r.stage.value} -> manual (ledger row {r.stage_change_id}): {'; '.join(r.reasons)}")
        else:
            rate = r.evidence.get("alert_rate")
            seen = (f"; alert rate ratio {_num(rate['ratio'], 2)} ({rate['alerts']} alert episodes vs {rate['baseline_sightings']} "
                    f"baseline bear episodes), e-values up {rate['e_up']:.3g} / down {rate['e_down']:.3g}, demotes at "
                    f"{rate['e_level']:g} ({rate['method']})") if rate else "; no alert-rate baseline yet"
            typer.echo(f"site {r.site}: {r.stage.value}, nothing found{seen}")


def backtest(
    model: Annotated[Path, typer.Option("--model", help=f"a fastai export (.pkl) to replay; {TRUST_WARNING}")],
    site: Annotated[str, typer.Option("--site", help="the site whose stored frames and verdicts to replay")],
    report: Annotated[Path | None, typer.Option("--report", help="HTML report to write (default: <data dir>/reports/backtest-SITE-TIME.html, listed on the dashboard's Models page)")] = None,
    start: Annotated[str | None, typer.Option("--from", help="first capture time (ISO, UTC; default: 30 days ago)")] = None,
    end: Annotated[str | None, typer.Option("--to", help="end of the capture window (default: now)")] = None,
    threshold: Annotated[float | None, typer.Option("--threshold", min=0, max=1, help="flag at this positive score (default: the rollout model's)")] = None,
    positive: Annotated[list[str] | None, typer.Option("--positive", help="class(es) that mean bear (default: the rollout model's)")] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1)] = 32,
    device: Annotated[str, typer.Option("--device", help="auto, cpu, cuda")] = "auto",
) -> None:
    """Replay a site's frames through a candidate model; write an HTML report."""
    from bearwatch.schema import utcnow
    from bearwatch.settings import load_settings
    from shadow.backtest import run_backtest, site_frames
    from shadow.backtest_report import render_html
    from shadow.sites import get_site

    typer.echo(f"warning: {TRUST_WARNING}", err=True)  # the words `model register` says
    settings = load_settings()
    b = _when(end, "--to") or utcnow()
    a = _when(start, "--from") or b - timedelta(days=30)
    if b <= a:
        raise BearwatchError("--to must be after --from")
    with open_database() as factory, factory() as session:
        s = get_site(session, site)
        count = len(site_frames(session, s, a, b))
        with progress("replaying frames", count, "frames") as advance:
            result = run_backtest(session, s, model.resolve(), settings.frames_dir, start=a, end=b, threshold=threshold,
                                  positive=positive, batch_size=batch_size, device=None if device == "auto" else device,
                                  progress=advance)
        page = render_html(result, settings.frames_dir)
    if report is None:
        report = settings.reports_dir / f"backtest-{site}-{utcnow():%Y%m%dT%H%M%SZ}.html"
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text(page, encoding="utf-8")
    a_ = result.agreement
    typer.echo(f"replayed {result.frames} frames ({len(result.failed)} unreadable); flagged {result.flagged}, alerts {result.alerts}")
    typer.echo(f"precision {_num(a_.precision.value)}, recall {_num(a_.recall.value)} on {a_.confusion.reviewed} reviewed frames")
    if result.rate is not None:
        typer.echo(f"alert-rate ratio to the manual baseline {_num(result.rate.test.ratio, 2)}")
    typer.echo(f"gate manual -> limited on these numbers: {result.gate_outcome.value}")
    typer.echo(f"report: {report}")


def register(app: typer.Typer) -> None:
    app.command("agreement")(agreement)
    app.command("gate")(gate)
    app.command("drift")(drift)
    app.command("drift-reference")(drift_reference)
    app.command("guard")(guard)
    app.command("backtest")(backtest)
