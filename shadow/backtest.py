"""Backtest: replay a site's stored frames through a candidate model (design.md section 1).

The frames are decoded and scored the way the inference worker does it (its
FrameDecoder and ModelRunner: the learner's own preprocessing), in batches. Reported:
- the alert rate the candidate would have had (its flags grouped into alerts, one per
  camera per cooldown, per camera-hour) against the site's manual baseline;
- its agreement with the stored ranger verdicts (shadow.agreement's truth rules);
- the manual -> limited gate it would get on those numbers (the drift and camera
  checks use what is stored for the window);
- the worst disagreements: the reviewed frames with the highest loss (binary
  cross-entropy of the candidate's positive score against the rangers' truth), as in
  fastai's plot_top_losses.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.orm import Session

from bearwatch.schema import Camera, Decision, Frame, Site, Verdict
from shadow import audit_design
from shadow.agreement import AgreementReport, ReviewedFrame, Truth, agreement_of, truth_of
from shadow.alert_rates import RateComparison, baseline_exposure, compare_rates, exposure, group_sightings
from shadow.episodes import episode_gap_s
from shadow.gates import Check, GateOutcome, ShadowEvidence, camera_counts, combine, drift_counts, manual_gate_checks
from shadow.periods import latest_manual_period, thresholds_of, usable_frame
from shadow.sightings import FrameObs, sighting_report

EPS = 1e-6


@dataclass(frozen=True)
class ScoredFrame:
    frame_id: int
    camera_id: int
    captured_at: datetime
    is_night: bool | None
    path: str
    score: float
    flagged: bool


@dataclass(frozen=True)
class Disagreement:
    frame: ScoredFrame
    truth: Truth
    loss: float


@dataclass(frozen=True)
class BacktestReport:
    site: str
    model_path: str
    threshold: float
    positive: tuple[str, ...]
    start: datetime
    end: datetime
    frames: int
    failed: dict[int, str]  # frame id -> why it could not be scored
    flagged: int
    alerts: int
    rate: RateComparison | None
    agreement: AgreementReport
    gate: tuple[Check, ...]
    gate_outcome: GateOutcome
    worst: tuple[Disagreement, ...]


def frame_loss(score: float, bear: bool) -> float:
    """Binary cross-entropy of the positive score against the truth."""
    p = min(max(score, EPS), 1.0 - EPS)
    return -math.log(p) if bear else -math.log(1.0 - p)


def worst_disagreements(scored: dict[int, ScoredFrame], verdicts: dict[int, list[tuple[int, Verdict]]], k: int) -> list[Disagreement]:
    """The ``k`` reviewed frames with the highest loss (disputed frames have no truth)."""
    out = []
    for frame_id, v in verdicts.items():
        frame = scored.get(frame_id)
        truth = truth_of(v)
        if frame is None or truth is Truth.DISPUTED:
            continue
        out.append(Disagreement(frame, truth, frame_loss(frame.score, truth is Truth.BEAR)))
    out.sort(key=lambda d: (-d.loss, d.frame.frame_id))
    return out[:k]


def score_frames(
    rows: list[tuple[int, int, datetime, bool | None, str]], frames_root: Path, model_path: Path, *,
    positive: list[str] | None, threshold: float, batch_size: int = 32, device: str | None = None,
    progress: Callable[[int], None] | None = None,
) -> tuple[list[ScoredFrame], dict[int, str], tuple[str, ...]]:
    """Score ``rows`` (id, camera, time, is_night, path) with the model at ``model_path``
    (no ``positive`` classes: ``bear``)."""
    # torch and fastai are loaded here, where frames are scored, not when the module is
    # imported (the report and the CLI's other commands start without them).
    from inference.decode import FrameDecoder, FrameFile
    from inference.registry import load_export
    from inference.runner import ModelRunner, pick_device

    export = load_export(model_path, positive)  # the registry's loader: one read, hashed bytes
    wanted = export.positive
    idx = [export.classes.index(c) for c in wanted]
    runner = ModelRunner(export.learner, pick_device(device))
    decoder = FrameDecoder(frames_root, threads=2)
    by_id = {r[0]: r for r in rows}
    scored: list[ScoredFrame] = []
    failed: dict[int, str] = {}
    try:
        for i in range(0, len(rows), batch_size):
            chunk = rows[i : i + batch_size]
            prepared = decoder.prepare([FrameFile(r[0], r[4]) for r in chunk], {runner.preprocessor.key: runner.preprocessor})
            failed.update(prepared.errors)
            if prepared.frame_ids:
                probs = runner(prepared.inputs[runner.preprocessor.key]).probabilities.tolist()
                for fid, p in zip(prepared.frame_ids, probs, strict=True):
                    fid_, cam, at, night, path = by_id[fid]
                    score = float(sum(p[j] for j in idx))
                    scored.append(ScoredFrame(fid_, cam, at, night, path, score, score >= threshold))
            if progress is not None:
                progress(len(chunk))
    finally:
        decoder.close()
    return scored, failed, tuple(wanted)


def site_frames(session: Session, site: Site, start: datetime, end: datetime) -> list[tuple[int, int, datetime, bool | None, str]]:
    return [tuple(r) for r in session.execute(  # type: ignore[misc]
        sa.select(Frame.id, Frame.camera_id, Frame.captured_at, Frame.is_night, Frame.path)
        .join(Camera, Camera.id == Frame.camera_id)
        .where(Camera.site_id == site.id, Frame.captured_at >= start, Frame.captured_at < end, usable_frame())
        .order_by(Frame.captured_at, Frame.id)
    )]


def stored_verdicts(session: Session, frame_ids: list[int]) -> dict[int, list[tuple[int, Verdict]]]:
    out: dict[int, list[tuple[int, Verdict]]] = {}
    for i in range(0, len(frame_ids), 500):
        for fid, reviewer, verdict in session.execute(
            sa.select(Decision.frame_id, Decision.reviewer_id, Decision.verdict)
            .where(Decision.frame_id.in_(frame_ids[i : i + 500])).order_by(Decision.frame_id, Decision.id)
        ):
            out.setdefault(fid, []).append((reviewer, verdict))
    return out


def run_backtest(
    session: Session, site: Site, model_path: Path, frames_root: Path, *, start: datetime, end: datetime,
    threshold: float | None = None, positive: list[str] | None = None, batch_size: int = 32, worst: int = 12,
    device: str | None = None, progress: Callable[[int], None] | None = None,
) -> BacktestReport:
    t = thresholds_of(site)
    rollout = site.rollout_model
    if threshold is None:
        threshold = rollout.threshold if rollout is not None else 0.5
    if positive is None and rollout is not None:
        positive = list(rollout.positive_classes)
    rows = site_frames(session, site, start, end)
    scored, failed, wanted = score_frames(rows, frames_root, model_path, positive=positive, threshold=threshold,
                                          batch_size=batch_size, device=device, progress=progress)
    by_id = {s.frame_id: s for s in scored}
    verdicts = stored_verdicts(session, [s.frame_id for s in scored])
    agreement = agreement_of(
        ReviewedFrame(fid, by_id[fid].camera_id, by_id[fid].captured_at, by_id[fid].flagged, by_id[fid].score, tuple(v))
        for fid, v in verdicts.items()
    )
    keys = [(s.camera_id, s.captured_at, s.is_night) for s in scored]
    alerts = group_sightings([(s.camera_id, s.captured_at, s.is_night) for s in scored if s.flagged], t.alert_cooldown_s)
    period = latest_manual_period(session, site, end)
    rate = None
    if period is not None:
        baseline = baseline_exposure(session, site, period, t)
        episodes = group_sightings(alerts, baseline.gap_s)
        rate = compare_rates(baseline, exposure(episodes, keys, baseline.gap_s), low=t.alert_ratio_low,
                             high=t.alert_ratio_high)
    checks_run, alarms = drift_counts(session, site, start, end)
    enabled, online, unknown = camera_counts(session, site)
    # Sightings of the candidate on the stored verdicts. Which design showed each frame was
    # the old model's, so every reviewed unflagged frame counts at the thinnest stratum's
    # rate: the recall bound stays valid, if wide.
    thinnest = audit_design.min_inclusion(t)
    obs = [FrameObs(s.frame_id, s.camera_id, s.captured_at, s.flagged,
                    truth_of(verdicts[s.frame_id]) if s.frame_id in verdicts else None, True,
                    1.0 if s.flagged else thinnest)
           for s in scored if s.flagged or s.frame_id in verdicts]
    sightings = sighting_report(obs, t.alert_cooldown_s, thinnest, gap_s=episode_gap_s(t))
    audited = sum(1 for s in scored if not s.flagged and s.frame_id in verdicts)
    evidence = ShadowEvidence((end - start).total_seconds() / 86400.0, checks_run, alarms, enabled, online, unknown,
                              sightings=sightings, baseline_sightings=rate.baseline.events if rate else 0,
                              baseline_camera_hours=rate.baseline.hours if rate else 0.0,
                              baseline_gap_s=rate.baseline.gap_s if rate else 0.0,
                              audited_frames=audited, unflagged_frames=sum(not s.flagged for s in scored))
    checks = tuple(manual_gate_checks(evidence, t))
    return BacktestReport(
        site=site.name, model_path=str(model_path), threshold=threshold, positive=wanted, start=start, end=end,
        frames=len(rows), failed=failed, flagged=sum(s.flagged for s in scored), alerts=len(alerts), rate=rate,
        agreement=agreement, gate=checks, gate_outcome=combine(list(checks)),
        worst=tuple(worst_disagreements(by_id, verdicts, worst)),
    )
