"""What reaches a ranger: held alerts first (oldest first), then frames the site's rollout
model flagged, then a random audit sample of frames it did not flag (so recall can be
measured). Frames this ranger already decided are left out; a frame flagged only by a
challenger model is not flagged here.

The audit sample is a hash of the frame id below the site's audit_rate: stable (the same
frames every time), and unbiased (ids follow capture order, not content). The same
formula runs in SQL (shadow.alert_rules.audit_hash).

Each query walks an index: alert_flags by alert, alerts by (site, status, created_at),
predictions by (model_version, flagged), frames by (camera, captured_at).
"""

from __future__ import annotations

import enum
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session

from bearwatch.auth import Actor
from bearwatch.schema import Alert, AlertFlag, AlertStatus, Camera, Decision, Frame, Prediction, Site, Stage, User
from shadow import alert_rules
from shadow.alerts import site_thresholds


class QueueReason(str, enum.Enum):
    PENDING_ALERT = "pending_alert"
    FLAGGED = "flagged"
    AUDIT = "audit"


@dataclass(frozen=True)
class QueueItem:
    frame_id: int
    path: str
    camera_id: int
    camera: str
    site: str
    captured_at: datetime
    model_label: str | None  # the model's most probable class
    model_score: float | None  # its positive (bear) score
    stage: Stage
    reason: QueueReason
    on_confirm: str  # what a confirm (or 'missed') will do
    pending_since: datetime
    alert_id: int | None


def _top_label(probabilities: dict[str, float] | None) -> str | None:
    return max(probabilities, key=lambda k: probabilities[k]) if probabilities else None


def review_queue(
    session: Session,
    reviewer: Actor,
    now: datetime,
    *,
    site: str | None = None,
    limit: int = 50,
    window: timedelta = timedelta(hours=24),
) -> list[QueueItem]:
    """The next frames for ``reviewer``: per site, held alerts (no time limit), then flagged
    frames and audit frames captured within ``window`` before ``now``, oldest first."""
    user_id = session.scalar(sa.select(User.id).where(User.name == reviewer.name))
    sites = session.scalars(sa.select(Site).where(Site.name == site) if site else sa.select(Site).order_by(Site.name)).all()
    cameras: dict[int, list[int]] = defaultdict(list)
    for camera_id, site_id in session.execute(sa.select(Camera.id, Camera.site_id).where(Camera.site_id.in_([s.id for s in sites]))):
        cameras[site_id].append(camera_id)
    items: list[QueueItem] = []
    for s in sites:
        items.extend(_site_queue(session, s, cameras[s.id], user_id, now - window, limit))
    order = {QueueReason.PENDING_ALERT: 0, QueueReason.FLAGGED: 1, QueueReason.AUDIT: 2}
    items.sort(key=lambda i: (order[i.reason], i.captured_at, i.frame_id))
    return items[:limit]


def _undecided(user_id: int | None) -> sa.ColumnElement[bool]:
    if user_id is None:
        return sa.true()
    return ~sa.select(Decision.id).where(Decision.frame_id == Frame.id, Decision.reviewer_id == user_id).exists()


def _site_queue(
    session: Session, site: Site, camera_ids: list[int], user_id: int | None, since: datetime, limit: int
) -> list[QueueItem]:
    if site.rollout_model_id is None or not camera_ids:
        return []
    # The site's cameras by id, not through a join on cameras: then PostgreSQL reads the
    # window through the (camera_id, captured_at) index, only this site's frames, instead
    # of every site's frames in the window by captured_at (4x faster at 20 sites).
    of_site = Frame.camera_id.in_(camera_ids)
    out: list[QueueItem] = []
    seen: set[int] = set()

    def item(frame: Frame, camera: str, pred: Prediction | None, reason: QueueReason, alert: Alert | None,
             processed: bool = True) -> None:
        if frame.id in seen:
            return
        seen.add(frame.id)
        flagged = pred is not None and pred.flagged
        status = alert.status if alert is not None else None
        if flagged and not processed:
            # Not yet processed: say what the processor will do with it.
            in_scope = alert_rules.in_trial_scope(site.trial_scope, site.trial_start, site.trial_end, frame.camera_id, frame.captured_at)
            status = alert_rules.flag_alert_status(site.stage, in_scope)
        out.append(QueueItem(
            frame_id=frame.id, path=frame.path, camera_id=frame.camera_id, camera=camera, site=site.name,
            captured_at=frame.captured_at, model_label=_top_label(pred.probabilities) if pred else None,
            model_score=pred.positive_score if pred else None, stage=site.stage, reason=reason,
            on_confirm=alert_rules.confirm_text(flagged, status),
            pending_since=alert.created_at if reason is QueueReason.PENDING_ALERT and alert else frame.captured_at,
            alert_id=alert.id if alert else None,
        ))

    pred_join = sa.and_(Prediction.frame_id == Frame.id, Prediction.model_version_id == site.rollout_model_id)
    # 1. Held alerts and every flagged frame that joined them, oldest frame first.
    pending = session.execute(
        sa.select(Frame, Camera.name, Prediction, Alert)
        .select_from(Alert)
        .join(AlertFlag, AlertFlag.alert_id == Alert.id)
        .join(Frame, Frame.id == AlertFlag.frame_id)
        .join(Camera, Camera.id == Frame.camera_id)
        .join(Prediction, Prediction.id == AlertFlag.prediction_id)
        .where(Alert.site_id == site.id, Alert.status == AlertStatus.PENDING, _undecided(user_id))
        .order_by(Frame.captured_at)
        .limit(limit)
    )
    for frame, camera, pred, alert in pending:
        item(frame, camera, pred, QueueReason.PENDING_ALERT, alert)
    # 2. Flagged frames in the window.
    flagged = session.execute(
        sa.select(Frame, Camera.name, Prediction, Alert, AlertFlag.id)
        .select_from(Prediction)
        .join(Frame, Frame.id == Prediction.frame_id)
        .join(Camera, Camera.id == Frame.camera_id)
        .outerjoin(AlertFlag, AlertFlag.prediction_id == Prediction.id)
        .outerjoin(Alert, Alert.id == AlertFlag.alert_id)
        .where(
            Prediction.model_version_id == site.rollout_model_id, Prediction.flagged.is_(True),
            of_site, Frame.captured_at >= since, _undecided(user_id),
        )
        .order_by(Frame.captured_at)
        .limit(limit + len(seen))
    )
    for frame, camera, pred, alert, flag_id in flagged:
        item(frame, camera, pred, QueueReason.FLAGGED, alert, processed=flag_id is not None)
    # 3. The audit sample of frames the model scored and did not flag.
    rate = site_thresholds(site).audit_rate
    if rate > 0:
        audit = session.execute(
            sa.select(Frame, Camera.name, Prediction)
            .join(Camera, Camera.id == Frame.camera_id)
            .join(Prediction, pred_join)
            .where(
                of_site, Frame.captured_at >= since, Prediction.flagged.is_(False),
                (Frame.id * alert_rules.HASH_MULTIPLIER) % alert_rules.HASH_MODULUS < alert_rules.audit_threshold(rate),
                _undecided(user_id),
            )
            .order_by(Frame.captured_at)
            .limit(limit)
        )
        for frame, camera, pred in audit:
            item(frame, camera, pred, QueueReason.AUDIT, None)
    return out
