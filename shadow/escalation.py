"""Held alerts escalate: in limited, a held alert waits for a ranger to confirm it; if
nobody decides within the site's ``held_escalation_s``, it goes to the alert channels
unverified, so a bear is not left unreported because the night ranger stepped away.

``held_escalation`` "notify": the channels get the alert marked unverified and it stays
held (a later confirm sends it again, verified; a dismiss suppresses it). "send": the
held alert itself goes out, marked unverified. Either way the time is recorded on the
alert (``escalated_at``) and counted (``bearwatch_held_alert_escalations_total``).
"""

from __future__ import annotations

from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from bearwatch.db import write_transaction
from bearwatch.schema import Alert, AlertStatus, Site, Stage
from shadow.alerts import set_status
from shadow.delivery import enqueue_deliveries
from shadow.locks import lock_alerts
from shadow.metrics import ESCALATIONS, count_on_commit
from shadow.periods import thresholds_of


def escalates_at(alert: Alert, site: Site) -> datetime | None:
    """When a held alert escalates (None: it does not, or it already did)."""
    after = thresholds_of(site).held_escalation_s
    if alert.status is not AlertStatus.PENDING or alert.escalated_at is not None or after <= 0:
        return None
    return alert.created_at + timedelta(seconds=after)


def escalate_held_alerts(factory: sessionmaker[Session], now: datetime) -> int:
    """Escalate every held alert past its site's deadline; how many. One statement for
    the limited sites, one per site with held alerts past due."""
    with write_transaction(factory) as session:
        lock_alerts(session)  # not while a ranger's verdict on the same alert commits
        done = 0
        for site in session.scalars(sa.select(Site).where(Site.stage == Stage.LIMITED)):
            done += _escalate_site(session, site, now)
        return done


def _escalate_site(session: Session, site: Site, now: datetime) -> int:
    t = thresholds_of(site)
    if t.held_escalation_s <= 0:
        return 0
    due = session.scalars(
        sa.select(Alert).where(
            Alert.site_id == site.id, Alert.status == AlertStatus.PENDING, Alert.escalated_at.is_(None),
            Alert.created_at <= now - timedelta(seconds=t.held_escalation_s),
        ).order_by(Alert.id)
    ).all()
    for alert in due:
        alert.escalated_at = now
        if t.held_escalation == "send":
            set_status(session, alert, AlertStatus.QUEUED)
        enqueue_deliveries(session, alert, site.name, now)
        count_on_commit(session, ESCALATIONS.labels(site=str(site.id), mode=t.held_escalation))
    return len(due)
