"""Alerts by rollout stage: turning the rollout model's flags into alerts, what a
ranger's verdict does to them (:func:`apply_decision`; shadow.verdicts records the
verdicts), ranger sightings, and listing alerts. The rules are in shadow.alert_rules.

:func:`process_new_flags` is safe to run repeatedly and concurrently: each flagged
prediction gets one ``alert_flags`` row (unique prediction id: the processed marker),
each alert a unique idempotency key, and all writers of alerts are serialised
(shadow.locks).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from bearwatch.db import write_transaction
from bearwatch.schema import (
    Alert,
    AlertDelivery,
    AlertFlag,
    AlertSource,
    AlertStatus,
    Camera,
    Decision,
    FlagOutcome,
    Frame,
    Prediction,
    Site,
    Stage,
)
from shadow import alert_rules
from shadow.alert_rules import FLAG_MAX_AGE_S, Effect
from shadow.delivery import enqueue_deliveries
from shadow.locks import lock_alerts
from shadow.metrics import ALERTS, count_on_commit
from shadow.periods import thresholds_of


def set_status(session: Session, alert: Alert, status: AlertStatus) -> None:
    alert.status = status
    count_on_commit(session, ALERTS.labels(site=str(alert.site_id), stage=alert.stage.value, status=status.value))


def rollout_prediction(session: Session, site: Site, frame_id: int) -> Prediction | None:
    if site.rollout_model_id is None:
        return None
    return session.scalar(
        sa.select(Prediction).where(Prediction.frame_id == frame_id, Prediction.model_version_id == site.rollout_model_id)
    )


def flag_alert(session: Session, prediction_id: int) -> tuple[AlertFlag | None, Alert | None]:
    """The processed marker of a flagged prediction and the alert it made or joined."""
    flag = session.scalar(sa.select(AlertFlag).where(AlertFlag.prediction_id == prediction_id))
    alert = session.get(Alert, flag.alert_id) if flag is not None and flag.alert_id is not None else None
    return flag, alert


def sighting_key(frame_id: int) -> str:
    return f"sighting:{frame_id}"


def sighting_alert(session: Session, frame_id: int) -> Alert | None:
    return session.scalar(sa.select(Alert).where(Alert.idempotency_key == sighting_key(frame_id)))


def _mergeable_alert(session: Session, camera_id: int, captured_at: datetime, cooldown_s: float) -> Alert | None:
    window = timedelta(seconds=cooldown_s)
    candidates = session.scalars(
        sa.select(Alert)
        .where(
            Alert.camera_id == camera_id,
            Alert.source == AlertSource.MODEL,
            Alert.status.in_(alert_rules.MERGEABLE),
            Alert.last_flag_at >= captured_at - window,
            Alert.last_flag_at <= captured_at + window,
        )
        .order_by(Alert.last_flag_at.desc())
        .limit(1)
    )
    return next(iter(candidates), None)


def process_flag(
    session: Session, site: Site, frame: Frame, prediction: Prediction, now: datetime, *, max_age_s: float | None
) -> AlertFlag:
    """Handle one flagged rollout prediction (the caller holds the alerts lock). Idempotent:
    a prediction already handled returns its marker unchanged."""
    flag, _ = flag_alert(session, prediction.id)
    if flag is not None:
        return flag
    stage = site.stage
    thresholds = thresholds_of(site)
    in_scope = alert_rules.in_trial_scope(site.trial_scope, site.trial_start, site.trial_end, frame.camera_id, frame.captured_at)
    status = alert_rules.flag_alert_status(stage, in_scope)
    alert: Alert | None = None
    if status is None:
        outcome = FlagOutcome.NO_ALERT
    elif max_age_s is not None and frame.captured_at < now - timedelta(seconds=max_age_s):
        outcome = FlagOutcome.STALE  # e.g. a backlog after an outage: recorded, not alerted
    else:
        alert = _mergeable_alert(session, frame.camera_id, frame.captured_at, thresholds.alert_cooldown_s)
        if alert is not None:
            outcome = FlagOutcome.MERGED
            alert.flag_count += 1
            if alert.last_flag_at is None or frame.captured_at > alert.last_flag_at:
                alert.last_flag_at = frame.captured_at
        else:
            outcome = FlagOutcome.ALERT
            alert = Alert(
                site_id=site.id, camera_id=frame.camera_id, frame_id=frame.id, model_version_id=prediction.model_version_id,
                stage=stage, status=status, source=AlertSource.MODEL, idempotency_key=f"flag:{prediction.id}",
                flag_count=1, last_flag_at=frame.captured_at, created_at=now,
            )
            session.add(alert)
            session.flush()
            set_status(session, alert, status)
            if status is AlertStatus.QUEUED:
                enqueue_deliveries(session, alert, site.name, now)
    flag = AlertFlag(
        prediction_id=prediction.id, frame_id=frame.id, site_id=site.id, alert_id=alert.id if alert else None,
        stage=stage, outcome=outcome, processed_at=now,
    )
    session.add(flag)
    session.flush()
    if alert is not None:
        # Verdicts given before the prediction arrived still count.
        for decision in session.scalars(sa.select(Decision).where(Decision.frame_id == frame.id).order_by(Decision.id)):
            apply_decision(session, decision, site, frame, flagged=True, now=now)
    return flag


def apply_decision(session: Session, decision: Decision, site: Site, frame: Frame, *, flagged: bool, now: datetime) -> tuple[Effect, Alert | None]:
    """Do what one verdict does to alerts (the caller holds the alerts lock)."""
    prediction = rollout_prediction(session, site, frame.id)
    alert = flag_alert(session, prediction.id)[1] if prediction is not None and flagged else None
    return apply_decision_to_alert(session, decision, site, frame, flagged=flagged, alert=alert, now=now)


def apply_decision_to_alert(
    session: Session, decision: Decision, site: Site, frame: Frame, *, flagged: bool, alert: Alert | None, now: datetime
) -> tuple[Effect, Alert | None]:
    """apply_decision with the model alert the frame's flag made or joined already known."""
    existing_sighting = sighting_alert(session, frame.id)
    effect = alert_rules.verdict_effect(decision.verdict, flagged, alert.status if alert else None, existing_sighting is not None)
    late = alert_rules.is_late(frame.captured_at, now, FLAG_MAX_AGE_S)
    effect = alert_rules.late_effect(effect, late, thresholds_of(site).late_alerts)
    if effect is Effect.LATE:
        if alert is not None and alert.status is AlertStatus.PENDING:  # held past its frame's freshness
            set_status(session, alert, AlertStatus.EXPIRED)
            alert.decision_id = decision.id
        return effect, alert if alert is not None else existing_sighting
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


def _unprocessed_flags(session: Session, limit: int) -> list[tuple[Prediction, Frame, Site]]:
    processed = sa.select(AlertFlag.id).where(AlertFlag.prediction_id == Prediction.id).exists()
    rows = session.execute(
        sa.select(Prediction, Frame, Site)
        .join(Frame, Frame.id == Prediction.frame_id)
        .join(Camera, Camera.id == Frame.camera_id)
        .join(Site, sa.and_(Site.id == Camera.site_id, Site.rollout_model_id == Prediction.model_version_id))
        .where(Prediction.flagged.is_(True), ~processed)
        .order_by(Prediction.id)
        .limit(limit)
    )
    return [(p, f, s) for p, f, s in rows]


@dataclass(frozen=True)
class ProcessReport:
    flags: int
    alerts: int  # new alerts
    merged: int
    no_alert: int
    stale: int


def process_new_flags(
    factory: sessionmaker[Session], now: datetime, *, batch_size: int = 500, max_age_s: float | None = FLAG_MAX_AGE_S
) -> ProcessReport:
    """Turn every new flag of a site's rollout model into alerts (or a 'no alert' marker).
    One transaction per batch; safe to run repeatedly and concurrently."""
    counts = {o: 0 for o in FlagOutcome}
    while True:
        with write_transaction(factory) as session:
            lock_alerts(session)
            batch = _unprocessed_flags(session, batch_size)
            for prediction, frame, site in batch:
                counts[process_flag(session, site, frame, prediction, now, max_age_s=max_age_s).outcome] += 1
        if len(batch) < batch_size:
            break
    return ProcessReport(
        flags=sum(counts.values()), alerts=counts[FlagOutcome.ALERT], merged=counts[FlagOutcome.MERGED],
        no_alert=counts[FlagOutcome.NO_ALERT], stale=counts[FlagOutcome.STALE],
    )


def create_sighting(session: Session, site: Site, frame: Frame, decision: Decision, now: datetime) -> Alert:
    """A ranger's sighting (a confirm where the flag made no alert, or a MISSED report):
    queued at once, in every stage."""
    alert = Alert(
        site_id=site.id, camera_id=frame.camera_id, frame_id=frame.id, model_version_id=site.rollout_model_id,
        stage=site.stage, status=AlertStatus.QUEUED, source=AlertSource.RANGER,
        idempotency_key=sighting_key(frame.id), decision_id=decision.id, flag_count=1,
        last_flag_at=frame.captured_at, created_at=now,
    )
    session.add(alert)
    session.flush()
    set_status(session, alert, AlertStatus.QUEUED)
    enqueue_deliveries(session, alert, site.name, now)
    return alert


@dataclass(frozen=True)
class AlertRow:
    id: int
    site: str
    camera: str
    frame_id: int
    model_version_id: int | None
    stage: Stage
    status: AlertStatus
    source: AlertSource
    flag_count: int
    created_at: datetime
    delivered_at: datetime | None
    last_error: str | None


def list_alerts(
    session: Session, *, site: str | None = None, statuses: list[AlertStatus] | None = None, limit: int = 100
) -> list[AlertRow]:
    """Newest first."""
    query = (
        sa.select(Alert, Site.name, Camera.name)
        .join(Site, Site.id == Alert.site_id)
        .join(Camera, Camera.id == Alert.camera_id)
        .order_by(Alert.created_at.desc(), Alert.id.desc())
        .limit(limit)
    )
    if site is not None:
        query = query.where(Site.name == site)
    if statuses:
        query = query.where(Alert.status.in_(statuses))
    return [
        AlertRow(
            id=a.id, site=site_name, camera=camera_name, frame_id=a.frame_id, model_version_id=a.model_version_id,
            stage=a.stage, status=a.status, source=a.source, flag_count=a.flag_count, created_at=a.created_at,
            delivered_at=a.delivered_at, last_error=a.last_error,
        )
        for a, site_name, camera_name in session.execute(query)
    ]
