"""Ranger verdicts: confirm or dismiss a flagged frame, or report a bear the model missed.

One verdict per frame and ranger (unique frame_id, reviewer_id): the same verdict again
is a no-op, a different one is refused (AlreadyDecided). Another ranger may review the
same frame. A ranger may undo their own last verdict for a short while, together with
what it did to alerts, unless its alert has already started going out.
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
    AlertSource,
    AlertStatus,
    Camera,
    Decision,
    Frame,
    Role,
    Site,
    User,
    Verdict,
)
from shadow import alert_rules
from shadow.alert_rules import Effect
from shadow.alerts import FLAG_MAX_AGE_S, create_sighting, flag_alert, process_flag, rollout_prediction, set_status, sighting_alert
from shadow.delivery import enqueue_deliveries
from shadow.locks import lock_alerts
from shadow.metrics import VERDICTS

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


def _frame_site(session: Session, frame_id: int) -> tuple[Frame, Site]:
    frame = session.get(Frame, frame_id)
    if frame is None:
        raise NotFound(f"no frame with id {frame_id}")
    camera = session.get(Camera, frame.camera_id)
    assert camera is not None
    site = session.get(Site, camera.site_id)
    assert site is not None
    return frame, site


def apply_decision(session: Session, decision: Decision, site: Site, frame: Frame, *, flagged: bool, now: datetime) -> tuple[Effect, Alert | None]:
    """Do what one verdict does to alerts (the caller holds the alerts lock)."""
    prediction = rollout_prediction(session, site, frame.id)
    alert = flag_alert(session, prediction.id)[1] if prediction is not None and flagged else None
    existing_sighting = sighting_alert(session, frame.id)
    effect = alert_rules.verdict_effect(decision.verdict, flagged, alert.status if alert else None, existing_sighting is not None)
    if effect is Effect.RELEASE and alert is not None:
        set_status(session, alert, AlertStatus.QUEUED)
        alert.decision_id = decision.id
        session.execute(sa.delete(AlertDelivery).where(AlertDelivery.alert_id == alert.id))
        enqueue_deliveries(session, alert, site.name, now)
    elif effect is Effect.SUPPRESS and alert is not None:
        set_status(session, alert, AlertStatus.SUPPRESSED)
        alert.decision_id = decision.id
    elif effect is Effect.SIGHTING:
        alert = create_sighting(session, site, frame, decision, now)
    else:
        alert = alert if alert is not None else existing_sighting
    return effect, alert


def submit_verdict(
    factory: sessionmaker[Session], frame_id: int, actor: Actor, verdict: Verdict, now: datetime, *, note: str | None = None
) -> VerdictResult:
    """Record a ranger's verdict on a frame and apply it to alerts, in one transaction."""
    with write_transaction(factory) as session:
        lock_alerts(session)
        user = _reviewer(session, actor)
        frame, site = _frame_site(session, frame_id)
        prediction = rollout_prediction(session, site, frame.id)
        flagged = bool(prediction is not None and prediction.flagged)
        problem = alert_rules.check_verdict_fits(verdict, flagged, frame.id)
        if problem:
            raise InvalidVerdict(problem)
        existing = session.scalar(sa.select(Decision).where(Decision.frame_id == frame.id, Decision.reviewer_id == user.id))
        if existing is not None:
            if existing.verdict is not verdict:
                raise AlreadyDecided(
                    f"{actor.name} already marked frame {frame.id} '{existing.verdict.value}' at "
                    f"{existing.decided_at:%Y-%m-%d %H:%M:%S}Z; undo it first (within {UNDO_WINDOW_S:g} s) to change it"
                )
            alert = (flag_alert(session, prediction.id)[1] if prediction is not None and flagged else None) or sighting_alert(session, frame.id)
            return VerdictResult(existing.id, frame.id, verdict, False, Effect.NONE, alert.id if alert else None)
        if flagged and prediction is not None:
            # Make sure the flag has made its alert (or its 'no alert' marker) first.
            process_flag(session, site, frame, prediction, now, max_age_s=FLAG_MAX_AGE_S)
        decision = Decision(frame_id=frame.id, reviewer_id=user.id, verdict=verdict, note=note, decided_at=now)
        session.add(decision)
        session.flush()
        effect, alert = apply_decision(session, decision, site, frame, flagged=flagged, now=now)
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
        frame, site = _frame_site(session, decision.frame_id)
        alerts = list(session.scalars(sa.select(Alert).where(Alert.decision_id == decision.id)))
        for alert in alerts:
            deliveries = list(session.scalars(
                sa.select(AlertDelivery).where(AlertDelivery.alert_id == alert.id).with_for_update()
                if session.get_bind().dialect.name == "postgresql"
                else sa.select(AlertDelivery).where(AlertDelivery.alert_id == alert.id)
            ))
            if alert.status in (AlertStatus.SENT, AlertStatus.DEAD) or any(d.attempts > 0 for d in deliveries):
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
