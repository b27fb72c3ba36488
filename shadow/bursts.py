"""Dismissing a burst: one camera flagged again and again by the same false alarm (a branch
in the wind, 20 flags in 10 minutes) is dismissed in one action, with one verdict row per
frame, exactly as that many single dismisses (shadow.verdicts.submit_verdict) would be.

The burst of a frame is every *open* flag of its camera captured within ``BURST_WINDOW``
of it: flagged by the site's rollout model, its flag already processed (its alert made,
joined or not made: shadow.alerts), and no verdict on it from anyone. A frame another
ranger has judged (a second look) or whose flag is still being processed is never in a
burst: it stays in the queue for a verdict of its own.

Two steps, so nothing is dismissed that the ranger did not see counted:
:func:`find_burst` says which frames a dismiss would take; :func:`dismiss_burst` takes
those frame ids and dismisses those that are still open (a flag that arrived in between
is not touched silently; it stays in the queue). Rules per stage are those of a single
dismiss: a held alert (limited, inside the trial) is suppressed, with the verdict that
suppressed it recorded on it (so undo can revert it); in manual and outside the trial
the verdicts are recorded; in expanded the alert has gone out and they are the audit.

Undo: :func:`undo_burst` takes back a whole burst of the ranger's within the undo window
(shadow.verdicts.UNDO_WINDOW_S): its verdicts go and the alerts they suppressed are held
again; the Review page's undo key does it right after a burst. The single undo
(shadow.verdicts.undo_last_verdict) takes back one frame of it only.

Each is one transaction of a fixed number of statements whatever the size of the burst:
find 2; dismiss 3 or 4 (two reads, one insert of every verdict, one update of the alerts it
suppresses, if any; plus the alerts lock on PostgreSQL); undo 4 (plus one per verdict another ranger
gave a burst frame since).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import cast

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from bearwatch.auth import Actor, require_role
from bearwatch.db import write_transaction
from bearwatch.errors import NotFound, UndoRefused
from bearwatch.schema import (
    Alert,
    AlertFlag,
    AlertStatus,
    Camera,
    Decision,
    Frame,
    ModelVersion,
    Prediction,
    Role,
    Site,
    User,
    Verdict,
)
from shadow.alerts import apply_decision, set_status
from shadow.locks import lock_alerts
from shadow.metrics import ALERTS, VERDICTS, count_on_commit
from shadow.verdicts import UNDO_WINDOW_S, review_design

BURST_WINDOW = timedelta(minutes=10)
_ALERTS = cast(sa.Table, Alert.__table__)


@dataclass(frozen=True)
class Burst:
    frame_id: int  # the frame the ranger is looking at
    camera_id: int
    frame_ids: tuple[int, ...]  # the open flags a dismiss takes, the frame itself among them if open, oldest first
    first_at: datetime | None
    last_at: datetime | None

    @property
    def others(self) -> int:
        """Open flags besides the frame itself."""
        return len([f for f in self.frame_ids if f != self.frame_id])


@dataclass(frozen=True)
class BurstResult:
    dismissed: tuple[int, ...]  # frames that got a dismiss verdict, oldest first
    skipped: tuple[int, ...]  # asked for but no longer open (decided meanwhile): untouched
    suppressed_alerts: tuple[int, ...]  # held alerts the dismiss suppressed
    decided_at: datetime


def find_burst(session: Session, frame_id: int, *, window: timedelta = BURST_WINDOW) -> Burst:
    """The open flags a burst dismiss from ``frame_id`` would take (two statements, reading
    the frames of one camera through (camera_id, captured_at))."""
    anchor_row = session.execute(
        sa.select(Frame.camera_id, Frame.captured_at, Site.rollout_model_id)
        .join(Camera, Camera.id == Frame.camera_id).join(Site, Site.id == Camera.site_id).where(Frame.id == frame_id)
    ).first()
    if anchor_row is None:
        raise NotFound(f"no frame with id {frame_id}")
    camera_id, captured_at, model_id = anchor_row
    rows = session.execute(_flags(camera_id, captured_at, model_id, window)).all() if model_id is not None else []
    ids = tuple(r[0] for r in rows)
    return Burst(frame_id, camera_id, ids, rows[0][1] if rows else None, rows[-1][1] if rows else None)


def _flags(
    camera_id: int, captured_at: datetime, model_id: int, window: timedelta, frame_ids: Iterable[int] | None = None
) -> sa.Select:
    decided = sa.select(Decision.id).where(Decision.frame_id == Frame.id).exists()
    stmt = (
        sa.select(Frame.id, Frame.captured_at, Frame.is_night, Alert)
        .join(Prediction, sa.and_(Prediction.frame_id == Frame.id, Prediction.model_version_id == model_id))
        .join(AlertFlag, AlertFlag.prediction_id == Prediction.id)
        .outerjoin(Alert, Alert.id == AlertFlag.alert_id)
        .where(
            Frame.camera_id == camera_id,
            Frame.captured_at >= captured_at - window,
            Frame.captured_at <= captured_at + window,
            Prediction.flagged,
            ~decided,
        )
        .order_by(Frame.captured_at, Frame.id)
    )
    if frame_ids is not None:
        stmt = stmt.where(Frame.id.in_(sorted(set(frame_ids))))
    return stmt


def dismiss_burst(
    factory: sessionmaker[Session],
    frame_id: int,
    frame_ids: Iterable[int],
    actor: Actor,
    now: datetime,
    *,
    window: timedelta = BURST_WINDOW,
) -> BurstResult:
    """Dismiss the frames of ``frame_ids`` (what :func:`find_burst` showed the ranger) that
    are still open flags of ``frame_id``'s burst, one verdict row each, in one transaction
    of at most five statements (the lock on PostgreSQL, two reads, one insert, one update)
    whatever their number."""
    asked = sorted(set(frame_ids))
    with write_transaction(factory) as session:
        lock_alerts(session)
        require_role(actor, Role.RANGER, "record a verdict")
        head = session.execute(
            sa.select(User.id, Frame.camera_id, Frame.captured_at, Site, ModelVersion.threshold)
            .select_from(User)
            .outerjoin(Frame, Frame.id == frame_id)
            .outerjoin(Camera, Camera.id == Frame.camera_id)
            .outerjoin(Site, Site.id == Camera.site_id)
            .outerjoin(ModelVersion, ModelVersion.id == Site.rollout_model_id)
            .where(User.name == actor.name)
        ).first()
        if head is None:
            raise NotFound(f"no user named {actor.name!r}; verdicts are recorded for registered users (`bearwatch user add`)")
        user_id, camera_id, captured_at, site, threshold = head
        if camera_id is None:
            raise NotFound(f"no frame with id {frame_id}")
        rows = [] if site.rollout_model_id is None or not asked else session.execute(
            _flags(camera_id, captured_at, site.rollout_model_id, window, asked)
        ).all()
        decisions: list[dict[str, object]] = []
        to_suppress: dict[int, tuple[Alert, int]] = {}  # alert id -> the alert, the frame whose dismiss suppresses it
        for fid, _at, _night, alert in rows:
            # A flagged frame's design does not depend on its score or night: 'flagged', 1.
            # An alert an earlier frame of the burst suppresses is no longer held for this one.
            held_now = None if alert is None or alert.id in to_suppress else alert
            design = review_design(site, Frame(id=fid), Prediction(flagged=True, positive_score=1.0), threshold, held_now)
            decisions.append(dict(frame_id=fid, reviewer_id=user_id, verdict=Verdict.DISMISS, note=None, decided_at=now,
                                  review_reason=design.reason, audit_stratum=design.stratum,
                                  inclusion_prob=design.inclusion_prob, design_derived=False))
            if alert is not None and alert.status is AlertStatus.PENDING and alert.id not in to_suppress:
                to_suppress[alert.id] = (alert, fid)  # the first dismiss suppresses it, as one by one
        if decisions:
            session.execute(sa.insert(Decision), decisions)  # one INSERT (executemany) for all of them
        if to_suppress:
            # The verdict that suppressed an alert is recorded on it (undo reverts exactly that).
            decision_of = (
                sa.select(Decision.id)
                .where(Decision.frame_id == sa.bindparam("fid"), Decision.reviewer_id == user_id)
                .scalar_subquery()
            )
            session.execute(
                sa.update(_ALERTS).where(_ALERTS.c.id == sa.bindparam("aid"))
                .values(status=AlertStatus.SUPPRESSED, decision_id=decision_of),
                [{"aid": aid, "fid": fid} for aid, (_, fid) in to_suppress.items()],
            )
            for alert, _fid in to_suppress.values():
                count_on_commit(session, ALERTS.labels(site=str(site.id), stage=alert.stage.value, status=AlertStatus.SUPPRESSED.value))
        dismissed = tuple(int(d["frame_id"]) for d in decisions)  # type: ignore[call-overload]
        result = BurstResult(dismissed, tuple(f for f in asked if f not in set(dismissed)), tuple(to_suppress), now)
        site_id = site.id
    if dismissed:
        VERDICTS.labels(site=str(site_id), verdict=Verdict.DISMISS.value).inc(len(dismissed))
    return result


def undo_burst(
    factory: sessionmaker[Session], actor: Actor, burst: BurstResult, now: datetime, *, window_s: float = UNDO_WINDOW_S
) -> int:
    """Take back the ranger's dismisses of ``burst`` (within ``window_s`` of it): the
    verdicts go, the alerts they suppressed are held again. Returns how many verdicts went."""
    if burst.decided_at < now - timedelta(seconds=window_s):
        raise UndoRefused(f"the burst dismiss is older than {window_s:g} s and stays; review the frames again with a note instead")
    if not burst.dismissed:
        raise UndoRefused("the burst dismissed nothing")
    with write_transaction(factory) as session:
        lock_alerts(session)
        require_role(actor, Role.RANGER, "undo a verdict")
        mine = (
            sa.select(Decision.id)
            .join(User, User.id == Decision.reviewer_id)
            .where(User.name == actor.name, Decision.frame_id.in_(list(burst.dismissed)),
                   Decision.verdict == Verdict.DISMISS, Decision.decided_at == burst.decided_at)
        )
        ids = list(session.scalars(mine))
        if not ids:
            raise UndoRefused("those verdicts are no longer there")
        for alert in session.scalars(sa.select(Alert).where(Alert.decision_id.in_(ids), Alert.status == AlertStatus.SUPPRESSED)):
            set_status(session, alert, AlertStatus.PENDING)
            alert.decision_id = None
        session.flush()
        session.execute(sa.delete(Decision).where(Decision.id.in_(ids)))
        # Other rangers' verdicts on these frames since the burst still count (rare: a loop).
        others = session.execute(
            sa.select(Decision, Frame, Site).join(Frame, Frame.id == Decision.frame_id)
            .join(Camera, Camera.id == Frame.camera_id).join(Site, Site.id == Camera.site_id)
            .where(Decision.frame_id.in_(list(burst.dismissed))).order_by(Decision.id)
        ).all()
        for decision, frame, site in others:
            apply_decision(session, decision, site, frame, flagged=True, now=now)
        return len(ids)
