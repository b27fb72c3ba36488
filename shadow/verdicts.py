"""Ranger verdicts: confirm or dismiss a flagged frame, or report a bear the model missed.

One verdict per frame and ranger (unique frame_id, reviewer_id): the same verdict again
is a no-op, a different one is refused (AlreadyDecided). Another ranger may review the
same frame. A ranger may undo their own last verdict for a short while, together with
what it did to alerts, unless its alert has already started going out.

Each verdict stores the review design it came through (design.md section 5): why the
frame was before the ranger (a held alert, a flag of the site's rollout model, the audit
sample, or else a report outside the design), the frame's audit stratum and its
inclusion probability (shadow.audit_design, with the site's thresholds at the time).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from bearwatch.auth import Actor, require_role
from bearwatch.db import write_transaction
from bearwatch.errors import AlreadyDecided, InvalidVerdict, NotFound, UndoRefused
from bearwatch.schema import (
    Alert,
    AlertDelivery,
    AlertFlag,
    AlertSource,
    AlertStatus,
    Camera,
    Decision,
    Frame,
    ModelVersion,
    Prediction,
    ReviewReason,
    Role,
    Site,
    User,
    Verdict,
)
from shadow import alert_rules, audit_design, follow_up
from shadow.alert_rules import FLAG_MAX_AGE_S, Effect
from shadow.alerts import (
    apply_decision,
    apply_decision_to_alert,
    process_flag,
    rollout_prediction,
    set_status,
    sighting_key,
)
from shadow.locks import lock_alerts
from shadow.metrics import VERDICTS
from shadow.periods import thresholds_of

UNDO_WINDOW_S = 60.0


@dataclass(frozen=True)
class VerdictResult:
    decision_id: int
    frame_id: int
    verdict: Verdict
    recorded: bool  # False: the same verdict was already there (idempotent repeat)
    effect: Effect
    alert_id: int | None  # the alert it released, suppressed or created


@dataclass(frozen=True)
class UndoResult:
    frame_id: int
    verdict: Verdict
    reverted: str  # what happened to alerts, for people


def _reviewer(session: Session, actor: Actor) -> User:
    require_role(actor, Role.RANGER, "record a verdict")
    user = session.scalar(sa.select(User).where(User.name == actor.name))
    if user is None:
        raise NotFound(f"no user named {actor.name!r}; verdicts are recorded for registered users (`bearwatch user add`)")
    return user


def _frame_site(session: Session, frame_id: int) -> tuple[Frame, Site, float | None]:
    """The frame, its site and the threshold of the site's rollout model, in one query."""
    row = session.execute(
        sa.select(Frame, Site, ModelVersion.threshold)
        .join(Camera, Camera.id == Frame.camera_id)
        .join(Site, Site.id == Camera.site_id)
        .outerjoin(ModelVersion, ModelVersion.id == Site.rollout_model_id)
        .where(Frame.id == frame_id)
    ).first()
    if row is None:
        raise NotFound(f"no frame with id {frame_id}")
    return row[0], row[1], row[2]


@dataclass(frozen=True)
class _VerdictContext:
    """What a verdict needs to know before it is recorded."""

    user_id: int
    frame: Frame
    site: Site
    model_threshold: float | None  # the site's rollout model's
    prediction: Prediction | None  # the rollout model's
    flag: AlertFlag | None  # the flag processor's marker of that prediction, once processed
    flag_alert: Alert | None  # the alert the flag made or joined
    sighting: Alert | None  # the frame's sighting alert (a ranger's 'missed' made it: shadow.alerts.sighting_alert)
    existing: Decision | None  # this ranger's verdict on the frame, if any


def _verdict_context(session: Session, actor: Actor, frame_id: int) -> _VerdictContext:
    """The ranger, the frame, its site and rollout prediction, the flag's alert, the
    frame's sighting alert and the ranger's earlier verdict, in one query (outer joins
    from the user, so a missing user and a missing frame are told apart)."""
    sighting = sa.orm.aliased(Alert, name="sighting")
    row = session.execute(
        sa.select(User.id, Frame, Site, ModelVersion.threshold, Prediction, AlertFlag, Alert, sighting, Decision)
        .select_from(User)
        .outerjoin(Frame, Frame.id == frame_id)
        .outerjoin(Camera, Camera.id == Frame.camera_id)
        .outerjoin(Site, Site.id == Camera.site_id)
        .outerjoin(ModelVersion, ModelVersion.id == Site.rollout_model_id)
        .outerjoin(Prediction, sa.and_(Prediction.frame_id == Frame.id, Prediction.model_version_id == Site.rollout_model_id))
        .outerjoin(AlertFlag, AlertFlag.prediction_id == Prediction.id)
        .outerjoin(Alert, Alert.id == AlertFlag.alert_id)
        .outerjoin(sighting, sighting.idempotency_key == sighting_key(frame_id))
        .outerjoin(Decision, sa.and_(Decision.frame_id == Frame.id, Decision.reviewer_id == User.id))
        .where(User.name == actor.name)
    ).first()
    if row is None:
        raise NotFound(f"no user named {actor.name!r}; verdicts are recorded for registered users (`bearwatch user add`)")
    user_id, frame, site, threshold, prediction, flag, alert, sighting_of_frame, existing = row
    if frame is None:
        raise NotFound(f"no frame with id {frame_id}")
    return _VerdictContext(user_id, frame, site, threshold, prediction, flag, alert, sighting_of_frame, existing)


@dataclass(frozen=True)
class ReviewDesign:
    """Why a frame was before the ranger, and the chance the review design had of it."""

    reason: ReviewReason
    stratum: str | None
    inclusion_prob: float | None


def review_design(
    site: Site, frame: Frame, prediction: Prediction | None, model_threshold: float | None, model_alert: Alert | None
) -> ReviewDesign:
    """The design behind a verdict (design.md section 5): a held alert or a flag of the
    site's rollout model is always reviewed; an unflagged frame is in the audit sample of
    its stratum, or else a ranger reported it outside the design (a missed report, with
    the chance the audit had of showing it; unknown without a prediction)."""
    if prediction is None or model_threshold is None:
        return ReviewDesign(ReviewReason.MISSED_REPORT, None, None)
    t = thresholds_of(site)
    score, night = prediction.positive_score, frame.is_night
    if prediction.flagged:
        reason = ReviewReason.HELD_ALERT if model_alert is not None and model_alert.status is AlertStatus.PENDING else ReviewReason.FLAGGED
        return ReviewDesign(reason, audit_design.Stratum.FLAGGED.value, 1.0)
    stratum = audit_design.stratum_of(score, night, False, model_threshold, t)
    reason = ReviewReason.AUDIT if audit_design.in_audit(frame.id, score, night, model_threshold, t) else ReviewReason.MISSED_REPORT
    return ReviewDesign(reason, stratum.value, audit_design.inclusion_probability(score, night, False, model_threshold, t))


def submit_verdict(
    factory: sessionmaker[Session], frame_id: int, actor: Actor, verdict: Verdict, now: datetime, *, note: str | None = None
) -> VerdictResult:
    """Record a ranger's verdict on a frame and apply it to alerts, in one transaction."""
    with write_transaction(factory) as session:
        lock_alerts(session)
        require_role(actor, Role.RANGER, "record a verdict")
        known = _verdict_context(session, actor, frame_id)
        frame, site, prediction = known.frame, known.site, known.prediction
        flagged = bool(prediction is not None and prediction.flagged)
        problem = alert_rules.check_verdict_fits(verdict, flagged, frame.id)
        if problem:
            raise InvalidVerdict(problem)
        if known.existing is not None:
            existing = known.existing
            if existing.verdict is not verdict:
                raise AlreadyDecided(
                    f"{actor.name} already marked frame {frame.id} '{existing.verdict.value}' at "
                    f"{existing.decided_at:%Y-%m-%d %H:%M:%S}Z; undo it first (within {UNDO_WINDOW_S:g} s) to change it"
                )
            alert = (known.flag_alert if flagged else None) or known.sighting
            return VerdictResult(existing.id, frame.id, verdict, False, Effect.NONE, alert.id if alert else None)
        model_alert = None
        if flagged and prediction is not None:
            if known.flag is not None:  # the flag processor has made its alert (or its 'no alert' marker)
                model_alert = known.flag_alert
            else:  # not yet: do it first. Its alert is then in the session: session.get costs no statement.
                flag = process_flag(session, site, frame, prediction, now, max_age_s=FLAG_MAX_AGE_S)
                model_alert = session.get(Alert, flag.alert_id) if flag.alert_id is not None else None
        design = review_design(site, frame, prediction, known.model_threshold, model_alert)
        if design.reason is ReviewReason.MISSED_REPORT and prediction is not None and follow_up.is_follow_up(
                session, frame.camera_id, frame.captured_at, thresholds_of(site).alert_cooldown_s):
            design = ReviewDesign(ReviewReason.FOLLOW_UP, design.stratum, design.inclusion_prob)
        decision = Decision(frame_id=frame.id, reviewer_id=known.user_id, verdict=verdict, note=note, decided_at=now,
                            review_reason=design.reason, audit_stratum=design.stratum, inclusion_prob=design.inclusion_prob)
        session.add(decision)
        session.flush()
        effect, alert = apply_decision_to_alert(session, decision, site, frame, flagged=flagged, alert=model_alert,
                                                sighting=known.sighting, now=now)
        result = VerdictResult(decision.id, frame.id, verdict, True, effect, alert.id if alert else None)
        site_id = site.id
    VERDICTS.labels(site=str(site_id), verdict=verdict.value).inc()
    return result


def undo_last_verdict(
    factory: sessionmaker[Session], actor: Actor, now: datetime, *, window_s: float = UNDO_WINDOW_S
) -> UndoResult:
    """Take back the actor's most recent verdict if it is at most ``window_s`` old and what
    it did can still be reverted (an alert already handed to a channel cannot be unsent)."""
    with write_transaction(factory) as session:
        lock_alerts(session)
        user = _reviewer(session, actor)
        decision = session.scalar(
            sa.select(Decision).where(Decision.reviewer_id == user.id).order_by(Decision.decided_at.desc(), Decision.id.desc()).limit(1)
        )
        if decision is None:
            raise UndoRefused(f"{actor.name} has no verdict to undo")
        if decision.decided_at < now - timedelta(seconds=window_s):
            raise UndoRefused(
                f"your last verdict (frame {decision.frame_id}, '{decision.verdict.value}' at {decision.decided_at:%H:%M:%S}Z) "
                f"is older than {window_s:g} s and stays; record a new review with a note instead"
            )
        frame, site, _ = _frame_site(session, decision.frame_id)
        alerts = list(session.scalars(sa.select(Alert).where(Alert.decision_id == decision.id)))
        for alert in alerts:
            deliveries = list(session.scalars(
                sa.select(AlertDelivery).where(AlertDelivery.alert_id == alert.id).with_for_update()
                if session.get_bind().dialect.name == "postgresql"
                else sa.select(AlertDelivery).where(AlertDelivery.alert_id == alert.id)
            ))
            # A dismissed alert's deliveries can only be an escalation notice (shadow.escalation),
            # which the dismiss did not send.
            sent = alert.status in (AlertStatus.SENT, AlertStatus.DEAD) or any(d.attempts > 0 for d in deliveries)
            if sent and alert.status is not AlertStatus.SUPPRESSED:
                raise UndoRefused(
                    f"the alert your verdict on frame {frame.id} sent (alert {alert.id}) has already gone out and cannot be "
                    "unsent; your verdict stays. Tell the recipients it was a false alarm"
                )
        reverted = []
        for alert in alerts:
            session.execute(sa.delete(AlertDelivery).where(AlertDelivery.alert_id == alert.id))
            if alert.source is AlertSource.RANGER:
                session.delete(alert)
                reverted.append(f"sighting alert {alert.id} withdrawn")
            else:
                set_status(session, alert, AlertStatus.PENDING)
                alert.decision_id = None
                alert.last_error = None
                reverted.append(f"alert {alert.id} is held again")
        verdict = decision.verdict
        session.delete(decision)
        session.flush()
        # Other rangers' verdicts on the frame still count.
        prediction = rollout_prediction(session, site, frame.id)
        flagged = bool(prediction is not None and prediction.flagged)
        for other in session.scalars(sa.select(Decision).where(Decision.frame_id == frame.id).order_by(Decision.id)):
            apply_decision(session, other, site, frame, flagged=flagged, now=now)
        return UndoResult(frame.id, verdict, "; ".join(reverted) or "no alert was affected")
