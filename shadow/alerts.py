"""Alerts by rollout stage: turning the rollout model's flags into alerts, what a
ranger's verdict does to them (:func:`apply_decision`; shadow.verdicts records the
verdicts), ranger sightings, and listing alerts. The rules are in shadow.alert_rules.

:func:`process_new_flags` reads the new flags from a cursor (shadow.flag_cursor), not the
whole history, and handles each batch in a fixed number of statements: it loads the
batch's flags, the alerts they may join, the verdicts given before them and the sightings
those made, applies the rules in memory in id order (a flag joins an alert made earlier
in the same batch), and writes alerts, markers and deliveries in bulk. :func:`process_flag`
does the same for one flag (a verdict on a frame whose flag is not handled yet).

Both are safe to run repeatedly and concurrently: each flagged prediction gets one
``alert_flags`` row (unique prediction id: the processed marker), each alert a unique
idempotency key, and all writers of alerts are serialised (shadow.locks).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import NamedTuple, cast

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
from shadow.delivery import NO_CHANNEL, enabled_channels, enqueue_deliveries, enqueue_many, serving
from shadow.flag_cursor import SETTLE_S, advance, flagged_after, open_cursor
from shadow.locks import lock_alerts
from shadow.metrics import ALERTS, count_on_commit
from shadow.periods import thresholds_of

FLAG_CURSOR = "alert_flags"  # the flag processor's row in shadow_cursors


def _count_status(session: Session, site_id: int, stage: Stage, status: AlertStatus) -> None:
    count_on_commit(session, ALERTS.labels(site=str(site_id), stage=stage.value, status=status.value))


def set_status(session: Session, alert: Alert, status: AlertStatus) -> None:
    alert.status = status
    _count_status(session, alert.site_id, alert.stage, status)


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
    return apply_decision_to_alert(session, decision, site, frame, flagged=flagged, alert=alert,
                                   sighting=sighting_alert(session, frame.id), now=now)


def decision_effect(
    decision: Decision, flagged: bool, alert_status: AlertStatus | None, sighting_exists: bool, captured_at: datetime,
    now: datetime, late_alerts: str,
) -> Effect:
    """What a verdict does to alerts now (alert_rules.verdict_effect, then its stale-frame rule)."""
    effect = alert_rules.verdict_effect(decision.verdict, flagged, alert_status, sighting_exists)
    return alert_rules.late_effect(effect, alert_rules.is_late(captured_at, now, FLAG_MAX_AGE_S), late_alerts)


def apply_decision_to_alert(
    session: Session, decision: Decision, site: Site, frame: Frame, *, flagged: bool, alert: Alert | None,
    sighting: Alert | None, now: datetime,
) -> tuple[Effect, Alert | None]:
    """apply_decision with the model alert the frame's flag made or joined, and the
    frame's sighting alert (``sighting_alert``), already known."""
    effect = decision_effect(decision, flagged, alert.status if alert else None, sighting is not None,
                             frame.captured_at, now, thresholds_of(site).late_alerts)
    if effect is Effect.LATE:
        if alert is not None and alert.status is AlertStatus.PENDING:  # held past its frame's freshness
            set_status(session, alert, AlertStatus.EXPIRED)
            alert.decision_id = decision.id
        return effect, alert if alert is not None else sighting
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
        alert = alert if alert is not None else sighting
    return effect, alert


class _NewFlag(NamedTuple):
    """A flagged rollout prediction not handled yet, with what the rules need of its frame."""

    prediction_id: int
    model_version_id: int
    frame_id: int
    camera_id: int
    captured_at: datetime
    site: Site


def _new_flags(session: Session, after: int, limit: int) -> list[_NewFlag]:
    """Flagged predictions of a site's rollout model above ``after`` without a processed
    marker, in id order (through the partial index on flagged predictions)."""
    handled = sa.select(AlertFlag.id).where(AlertFlag.prediction_id == Prediction.id).exists()
    # The flags with their frames, in id order, apart (OFFSET 0: a subquery the planner
    # keeps): the newest predictions' statistics lag (on the partitioned layout, those of
    # the partition now written), and with a flag or so expected PostgreSQL joined every
    # site's cameras first and looked up each flag's frame once per camera (100,000 lookups
    # for 100 flags, 181 ms at the season bench's 10M).
    flags = (
        sa.select(Prediction.id.label("prediction_id"), Prediction.model_version_id, Frame.id.label("frame_id"),
                  Frame.camera_id, Frame.captured_at)
        .join(Frame, Frame.id == Prediction.frame_id)
        .where(flagged_after(after), ~handled)
        .order_by(Prediction.id)
        .offset(0)
        .subquery("new_flags")
    )
    f = flags.c
    rows = session.execute(
        sa.select(f.prediction_id, f.model_version_id, f.frame_id, f.camera_id, f.captured_at, Site)
        .select_from(flags)
        .join(Camera, Camera.id == f.camera_id)
        .join(Site, sa.and_(Site.id == Camera.site_id, Site.rollout_model_id == f.model_version_id))
        .order_by(f.prediction_id)
        .limit(limit)
    )
    return [_NewFlag(*row) for row in rows]


@dataclass(eq=False)
class _Draft:
    """An alert a batch makes or changes, kept in memory and written back in bulk."""

    site_id: int
    site_name: str
    camera_id: int
    frame_id: int
    model_version_id: int | None
    stage: Stage
    status: AlertStatus
    source: AlertSource
    idempotency_key: str
    flag_count: int
    last_flag_at: datetime | None
    created_at: datetime
    decision_id: int | None = None
    last_error: str | None = None
    id: int | None = None  # None: made by this batch
    merged: bool = False  # flag_count / last_flag_at changed
    decided: bool = False  # status / decision_id changed
    resend: bool = False  # released: the deliveries it had (an escalation notice) go
    deliver: bool = False  # into the outbox
    no_channel: bool = False  # no channel serves its site: last_error says so


_ALERTS = cast(sa.Table, Alert.__table__)
_ALERT_FLAGS = cast(sa.Table, AlertFlag.__table__)
_INSERTED = ("site_id", "camera_id", "frame_id", "model_version_id", "stage", "status", "source", "idempotency_key",
             "flag_count", "last_flag_at", "created_at", "decision_id", "last_error")
_DRAFT_COLUMNS = (Alert.id, Alert.site_id, Site.name, Alert.camera_id, Alert.frame_id, Alert.model_version_id, Alert.stage,
                  Alert.status, Alert.source, Alert.idempotency_key, Alert.flag_count, Alert.last_flag_at, Alert.created_at,
                  Alert.decision_id, Alert.last_error)


def _drafts(session: Session, condition: sa.ColumnElement[bool]) -> list[_Draft]:
    rows = session.execute(sa.select(*_DRAFT_COLUMNS).join(Site, Site.id == Alert.site_id).where(condition))
    return [_Draft(id=alert_id, site_id=site_id, site_name=site_name, camera_id=camera_id, frame_id=frame_id,
                   model_version_id=model_id, stage=stage, status=status, source=source, idempotency_key=key,
                   flag_count=flag_count, last_flag_at=last_flag_at, created_at=created_at, decision_id=decision_id,
                   last_error=last_error)
            for (alert_id, site_id, site_name, camera_id, frame_id, model_id, stage, status, source, key, flag_count,
                 last_flag_at, created_at, decision_id, last_error) in rows]


class _Batch:
    """One batch of new flags: the rows it needs are loaded in a few queries, the rules
    applied in memory in id order, and the outcome written in a few bulk statements."""

    def __init__(self, session: Session, flags: list[_NewFlag], now: datetime, max_age_s: float | None) -> None:
        self.session, self.now = session, now
        self.thresholds = {f.site.id: thresholds_of(f.site) for f in flags}
        self.plans = [(f, self._alert_status(f, max_age_s)) for f in flags]
        alerting = [f for f, (status, stale) in self.plans if status is not None and not stale]
        self.by_camera: dict[int, list[_Draft]] = {}
        for draft in self._mergeable(alerting):
            self.by_camera.setdefault(draft.camera_id, []).append(draft)
        self.decisions = self._decisions(alerting)
        self.sightings = self._sightings()
        self.new: list[_Draft] = []
        self.markers: list[tuple[_NewFlag, FlagOutcome, _Draft | None]] = []

    def _alert_status(self, flag: _NewFlag, max_age_s: float | None) -> tuple[AlertStatus | None, bool]:
        """The status of the alert the flag would make (None: none), and whether it is stale."""
        site = flag.site
        in_scope = alert_rules.in_trial_scope(site.trial_scope, site.trial_start, site.trial_end, flag.camera_id, flag.captured_at)
        stale = max_age_s is not None and flag.captured_at < self.now - timedelta(seconds=max_age_s)
        return alert_rules.flag_alert_status(site.stage, in_scope), stale

    def _mergeable(self, flags: list[_NewFlag]) -> list[_Draft]:
        """The model alerts the flags may join (those of their cameras, within cooldown of the batch)."""
        if not flags:
            return []
        reach = [(f.captured_at, timedelta(seconds=self.thresholds[f.site.id].alert_cooldown_s)) for f in flags]
        return _drafts(self.session, sa.and_(
            Alert.camera_id.in_({f.camera_id for f in flags}), Alert.source == AlertSource.MODEL,
            Alert.status.in_(alert_rules.MERGEABLE),
            Alert.last_flag_at >= min(t - w for t, w in reach), Alert.last_flag_at <= max(t + w for t, w in reach),
        ))

    def _decisions(self, flags: list[_NewFlag]) -> dict[int, list[Decision]]:
        """The verdicts given on these flags' frames before the flags were handled, by frame."""
        decisions: dict[int, list[Decision]] = {}
        if flags:
            query = sa.select(Decision).where(Decision.frame_id.in_([f.frame_id for f in flags])).order_by(Decision.id)
            for decision in self.session.scalars(query):
                decisions.setdefault(decision.frame_id, []).append(decision)
        return decisions

    def _sightings(self) -> dict[int, _Draft]:
        """The ranger sightings of the frames with verdicts, by frame."""
        if not self.decisions:
            return {}
        keys = [sighting_key(frame_id) for frame_id in self.decisions]
        return {d.frame_id: d for d in _drafts(self.session, Alert.idempotency_key.in_(keys))}

    def run(self) -> Counter[FlagOutcome]:
        outcomes: Counter[FlagOutcome] = Counter()
        for flag, (status, stale) in self.plans:
            outcomes[self._handle(flag, status, stale)] += 1
        self._write()
        return outcomes

    def _handle(self, flag: _NewFlag, status: AlertStatus | None, stale: bool) -> FlagOutcome:
        """process_flag's rules for one flag, in memory."""
        alert: _Draft | None = None
        if status is None:
            outcome = FlagOutcome.NO_ALERT
        elif stale:
            outcome = FlagOutcome.STALE  # e.g. a backlog after an outage: recorded, not alerted
        else:
            alert = self._join(flag)
            outcome = FlagOutcome.MERGED if alert is not None else FlagOutcome.ALERT
            alert = alert or self._make(flag, status)
        self.markers.append((flag, outcome, alert))
        if alert is not None:
            # Verdicts given before the prediction arrived still count.
            for decision in self.decisions.get(flag.frame_id, []):
                self._apply(decision, flag, alert)
        return outcome

    def _join(self, flag: _NewFlag) -> _Draft | None:
        cooldown_s = self.thresholds[flag.site.id].alert_cooldown_s
        candidates = [a for a in self.by_camera.get(flag.camera_id, []) if a.status in alert_rules.MERGEABLE
                      and a.last_flag_at is not None and alert_rules.within_cooldown(a.last_flag_at, flag.captured_at, cooldown_s)]
        alert = max(candidates, key=lambda a: cast(datetime, a.last_flag_at), default=None)
        if alert is not None:
            alert.flag_count += 1
            if alert.last_flag_at is None or flag.captured_at > alert.last_flag_at:
                alert.last_flag_at = flag.captured_at
            alert.merged = alert.id is not None
        return alert

    def _make(self, flag: _NewFlag, status: AlertStatus) -> _Draft:
        site = flag.site
        alert = _Draft(site_id=site.id, site_name=site.name, camera_id=flag.camera_id, frame_id=flag.frame_id,
                       model_version_id=flag.model_version_id, stage=site.stage, status=status, source=AlertSource.MODEL,
                       idempotency_key=f"flag:{flag.prediction_id}", flag_count=1, last_flag_at=flag.captured_at,
                       created_at=self.now, deliver=status is AlertStatus.QUEUED)
        _count_status(self.session, alert.site_id, alert.stage, status)
        self.new.append(alert)
        self.by_camera.setdefault(alert.camera_id, []).append(alert)
        return alert

    def _apply(self, decision: Decision, flag: _NewFlag, alert: _Draft) -> None:
        """apply_decision_to_alert for a flag's alert, in memory."""
        effect = decision_effect(decision, True, alert.status, flag.frame_id in self.sightings, flag.captured_at, self.now,
                                 self.thresholds[flag.site.id].late_alerts)
        if effect is Effect.LATE and alert.status is AlertStatus.PENDING:  # held past its frame's freshness
            self._decide(alert, AlertStatus.EXPIRED, decision)
        elif effect is Effect.RELEASE:
            self._decide(alert, AlertStatus.QUEUED, decision)
            alert.deliver, alert.resend = True, alert.id is not None
        elif effect is Effect.SUPPRESS:
            self._decide(alert, AlertStatus.SUPPRESSED, decision)
        elif effect is Effect.SIGHTING:
            self._sighting(flag, decision)

    def _decide(self, alert: _Draft, status: AlertStatus, decision: Decision) -> None:
        alert.status, alert.decision_id, alert.decided = status, decision.id, alert.id is not None
        _count_status(self.session, alert.site_id, alert.stage, status)

    def _sighting(self, flag: _NewFlag, decision: Decision) -> None:
        """create_sighting, in memory."""
        site = flag.site
        sighting = _Draft(site_id=site.id, site_name=site.name, camera_id=flag.camera_id, frame_id=flag.frame_id,
                          model_version_id=site.rollout_model_id, stage=site.stage, status=AlertStatus.QUEUED,
                          source=AlertSource.RANGER, idempotency_key=sighting_key(flag.frame_id), flag_count=1,
                          last_flag_at=flag.captured_at, created_at=self.now, decision_id=decision.id, deliver=True)
        _count_status(self.session, sighting.site_id, sighting.stage, AlertStatus.QUEUED)
        self.new.append(sighting)
        self.sightings[flag.frame_id] = sighting

    def _write(self) -> None:
        """Everything the batch decided, in a fixed number of statements."""
        session = self.session
        existing = [a for drafts in self.by_camera.values() for a in drafts if a.id is not None]
        outbox = self._outbox([a for a in (*self.new, *existing) if a.deliver])
        resent = [a.id for a in existing if a.resend]
        if resent:
            session.execute(sa.delete(AlertDelivery).where(AlertDelivery.alert_id.in_(resent)))
        if self.new:
            # RETURNING the unique key too: rows of a multi-row insert come back in no set order.
            ids = dict((key, alert_id) for alert_id, key in session.execute(
                sa.insert(_ALERTS).returning(_ALERTS.c.id, _ALERTS.c.idempotency_key),
                [{c: getattr(a, c) for c in _INSERTED} for a in self.new]))
            for alert in self.new:
                alert.id = ids[alert.idempotency_key]
        _update(session, [a for a in existing if a.merged], ("flag_count", "last_flag_at"))
        _update(session, [a for a in existing if a.decided], ("status", "decision_id"))
        _update(session, [a for a in existing if a.no_channel], ("last_error",))
        if self.markers:
            session.execute(sa.insert(_ALERT_FLAGS), [
                {"prediction_id": f.prediction_id, "frame_id": f.frame_id, "site_id": f.site.id,
                 "alert_id": a.id if a is not None else None, "stage": f.site.stage, "outcome": outcome, "processed_at": self.now}
                for f, outcome, a in self.markers])
        enqueue_many(session, [(cast(int, a.id), channel_ids) for a, channel_ids in outbox], self.now)

    def _outbox(self, alerts: list[_Draft]) -> list[tuple[_Draft, list[int]]]:
        """The channels each alert goes to; an alert no channel serves says so (as enqueue_deliveries)."""
        channels = enabled_channels(self.session) if alerts else []
        outbox = [(a, serving(channels, a.site_name)) for a in alerts]
        for alert, channel_ids in outbox:
            if not channel_ids:
                alert.last_error, alert.no_channel = NO_CHANNEL, alert.id is not None
        return outbox


def _update(session: Session, alerts: list[_Draft], columns: tuple[str, ...]) -> None:
    """One UPDATE for many alerts (executemany): these columns, from the drafts."""
    if alerts:
        session.execute(
            sa.update(_ALERTS).where(_ALERTS.c.id == sa.bindparam("b_id")).values({c: sa.bindparam(f"b_{c}") for c in columns}),
            [{"b_id": a.id, **{f"b_{c}": getattr(a, c) for c in columns}} for a in alerts],
        )


@dataclass(frozen=True)
class ProcessReport:
    flags: int
    alerts: int  # new alerts
    merged: int
    no_alert: int
    stale: int


def process_new_flags(
    factory: sessionmaker[Session], now: datetime, *, batch_size: int = 500, max_age_s: float | None = FLAG_MAX_AGE_S,
    settle_s: float = SETTLE_S,
) -> ProcessReport:
    """Turn every new flag of a site's rollout model into alerts (or a 'no alert' marker).
    One transaction and a fixed number of statements per batch; safe to run repeatedly and
    concurrently. ``settle_s``: how long the cursor waits before it moves past a flag id
    (shadow.flag_cursor)."""
    counts: Counter[FlagOutcome] = Counter()
    read_after = 0
    while True:
        with write_transaction(factory) as session:
            lock_alerts(session)
            cursor = open_cursor(session, FLAG_CURSOR, now)
            # Within a pass, what earlier batches read is handled; the cursor itself moves
            # only by the settle rule, at the end of the pass.
            read_after = max(read_after, cursor.position)
            batch = _new_flags(session, read_after, batch_size)
            counts += _Batch(session, batch, now, max_age_s).run()
            more = len(batch) == batch_size
            if more:
                read_after = batch[-1].prediction_id
            else:
                advance(session, cursor, now, settle_s=settle_s)
        if not more:
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
