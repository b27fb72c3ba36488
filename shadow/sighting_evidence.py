"""Reading a site's sightings from the database: the rollout model's flagged frames and
every reviewed frame of a window, with the review design stored on each verdict
(shadow.sightings does the counting; this module only gathers).

Four statements: the site's cameras, the window's predictions of the model that are
flagged or have a verdict (through the (camera_id, captured_at) index) with their
decisions, the count of scored frames (optional), and the ledger's audit designs. Verdicts from before
the design was stored (``inclusion_prob`` NULL) get it from the audit design in force
now (:mod:`shadow.audit_design`), and the report says how many did.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session

from bearwatch.park_file import Thresholds
from bearwatch.schema import Camera, Decision, Frame, ModelVersion, Prediction, ReviewReason, Site, StageChange, Verdict
from shadow import audit_design
from shadow.episodes import episode_gap_s
from shadow.periods import thresholds_from, thresholds_of
from shadow.sightings import FrameObs, SightingReport, sighting_report
from shadow.truth import truth_of

DESIGN_REASONS = frozenset({ReviewReason.FLAGGED, ReviewReason.HELD_ALERT, ReviewReason.AUDIT, ReviewReason.FOLLOW_UP})


@dataclass(frozen=True)
class SightingEvidence:
    report: SightingReport
    frames_scored: int  # the model's predictions in the window (for workload planning)
    unflagged_scored: int
    audited_frames: int  # unflagged frames reviewed through the design
    derived_design: int  # verdicts whose inclusion probability was not stored but derived
    model_version_id: int


def _min_inclusion(session: Session, site: Site, start: datetime, end: datetime, now_t: Thresholds) -> float:
    """The thinnest audit in force during the window: now, and every ledger row in it."""
    rows = session.scalars(
        sa.select(StageChange.thresholds).where(StageChange.site_id == site.id, StageChange.changed_at >= start,
                                                StageChange.changed_at < end)
    ).all()
    rates = [audit_design.min_inclusion(now_t)]
    for stored in rows:
        rates.append(audit_design.min_inclusion(thresholds_from(stored)))
    return min(rates)


def site_sightings(session: Session, site: Site, start: datetime, end: datetime,
                   model_version_id: int | None = None, *, count_scored: bool = True) -> SightingEvidence | None:
    """Sightings of ``model_version_id`` (default: the site's rollout model) at ``site`` in
    [start, end); None when there is no model. ``count_scored=False`` skips counting the
    window's scored frames (the audit workload the gates plan with; 0 then)."""
    model_id = model_version_id if model_version_id is not None else site.rollout_model_id
    if model_id is None:
        return None
    model = session.get(ModelVersion, model_id)
    model_threshold = model.threshold if model is not None else 0.5
    t = thresholds_of(site)
    camera_ids = list(session.scalars(sa.select(Camera.id).where(Camera.site_id == site.id)))
    if not camera_ids:
        return None
    in_window = sa.and_(Frame.camera_id.in_(camera_ids), Frame.captured_at >= start, Frame.captured_at < end)
    rows = session.execute(
        sa.select(Frame.id, Frame.camera_id, Frame.captured_at, Frame.is_night, Prediction.flagged,
                  Prediction.positive_score, Decision.reviewer_id, Decision.verdict, Decision.review_reason,
                  Decision.inclusion_prob)
        .join(Prediction, sa.and_(Prediction.frame_id == Frame.id, Prediction.model_version_id == model_id))
        .outerjoin(Decision, Decision.frame_id == Frame.id)
        .where(in_window, sa.or_(Prediction.flagged.is_(True), Decision.id.is_not(None)))
        .order_by(Frame.id, Decision.decided_at, Decision.id)
    ).all()
    scored = unflagged = 0
    if count_scored:
        scored, unflagged = session.execute(
            sa.select(sa.func.count(), sa.func.count().filter(Prediction.flagged.is_(False)))
            .select_from(Frame).join(Prediction, sa.and_(Prediction.frame_id == Frame.id,
                                                         Prediction.model_version_id == model_id))
            .where(in_window)
        ).one()
    heads: dict[int, tuple[int, datetime, bool | None, bool, float]] = {}
    verdicts: dict[int, list[tuple[int, Verdict]]] = defaultdict(list)
    design: dict[int, bool] = {}
    stored_pi: dict[int, float | None] = {}
    for fid, cam, at, night, flagged, score, reviewer, verdict, reason, pi in rows:
        heads[fid] = (cam, at, night, bool(flagged), float(score))
        if verdict is not None:
            verdicts[fid].append((reviewer, verdict))
            design[fid] = design.get(fid, False) or reason in DESIGN_REASONS
            stored_pi.setdefault(fid, pi)
    frames: list[FrameObs] = []
    derived = audited = 0
    for fid, (cam, at, night, flagged, score) in heads.items():
        pi = stored_pi.get(fid)
        is_design = flagged or design.get(fid, False)
        if not flagged and fid in verdicts and pi is None:
            derived += 1
            pi = audit_design.inclusion_probability(score, night, False, model_threshold, t)
            is_design = audit_design.in_audit(fid, score, night, model_threshold, t)
        audited += (not flagged) and fid in verdicts and is_design
        frames.append(FrameObs(fid, cam, at, flagged, truth_of(verdicts[fid]) if fid in verdicts else None,
                               is_design, 1.0 if flagged else float(pi if pi is not None else 0.0)))
    report = sighting_report(frames, t.alert_cooldown_s, _min_inclusion(session, site, start, end, t),
                             gap_s=episode_gap_s(t))
    return SightingEvidence(report, int(scored or 0), int(unflagged or 0), audited, derived, model_id)
