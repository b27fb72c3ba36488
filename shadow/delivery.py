"""The alert outbox: one delivery row per alert and channel (unique), delivered by a loop
that POSTs JSON to webhooks with an Idempotency-Key, retries with capped exponential
backoff and gives up (dead letter) after N attempts. A receiver that is down loses
nothing: the rows wait in the database until it is back.

A delivery is claimed (attempt counted, lease set) and committed *before* it is sent,
so an undo can tell an alert that may already be out from one that surely is not.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from bearwatch.db import write_transaction
from bearwatch.redact import redact_text, redact_url
from bearwatch.schema import (
    Alert,
    AlertChannel,
    AlertDelivery,
    AlertStatus,
    Camera,
    ChannelKind,
    DeliveryStatus,
    Frame,
    Site,
)
from shadow.metrics import ALERTS, DELIVERIES, OUTBOX_DEPTH, count_on_commit

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DeliveryPolicy:
    max_attempts: int = 20  # about an hour of retries at the default delays: an outage of minutes loses nothing
    base_delay_s: float = 2.0
    max_delay_s: float = 300.0
    timeout_s: float = 5.0  # per HTTP request
    lease_s: float = 60.0  # a crashed sender's claim expires after this
    batch: int = 50


def backoff_delay(attempts: int, policy: DeliveryPolicy) -> float:
    """Seconds before the next try after ``attempts`` failed ones: base, 2x base, ... capped."""
    return min(policy.max_delay_s, policy.base_delay_s * 2 ** max(attempts - 1, 0))


def channel_serves(channel_sites: list[str], site_name: str) -> bool:
    return not channel_sites or site_name in channel_sites


def shown_url(url: str | None) -> str:
    """A webhook URL for people: credentials masked and the path hidden (webhook paths
    often are the secret)."""
    if not url:
        return "-"
    parts = urlsplit(redact_url(url))
    return urlunsplit((parts.scheme, parts.netloc, "/..." if parts.path not in ("", "/") else parts.path, "", ""))


def enqueue_deliveries(session: Session, alert: Alert, site_name: str, now: datetime) -> int:
    """Put a queued alert in the outbox of every enabled channel that serves its site."""
    channels = session.scalars(sa.select(AlertChannel).where(AlertChannel.enabled.is_(True)).order_by(AlertChannel.id))
    made = 0
    for channel in channels:
        if channel_serves(channel.sites or [], site_name):
            session.add(AlertDelivery(alert_id=alert.id, channel_id=channel.id, next_attempt_at=now))
            made += 1
    if made == 0:
        alert.last_error = "no enabled alert channel serves this site; add one under alerts.channels in the park file"
    session.flush()
    return made


def alert_payload(alert: Alert, site: str, camera: str, frame: Frame) -> dict[str, Any]:
    return {
        "idempotency_key": alert.idempotency_key,
        "alert_id": alert.id,
        "site": site,
        "camera": camera,
        "frame_id": alert.frame_id,
        "captured_at": frame.captured_at.isoformat(),
        "frame_path": frame.path,
        "stage": alert.stage.value,
        "source": alert.source.value,
        "model_version_id": alert.model_version_id,
        "flag_count": alert.flag_count,
        "created_at": alert.created_at.isoformat(),
    }


@dataclass(frozen=True)
class Claimed:
    delivery_id: int
    channel: str
    kind: ChannelKind
    url: str | None
    attempts: int
    payload: dict[str, Any]


Sender = Callable[[Claimed], None]  # raises on failure


def enqueue_orphans(session: Session, now: datetime, limit: int = 100) -> int:
    """Queued alerts with no delivery row (made while no channel served their site) go to
    the channels that serve them now."""
    has_delivery = sa.select(AlertDelivery.id).where(AlertDelivery.alert_id == Alert.id).exists()
    orphans = session.execute(
        sa.select(Alert, Site.name).join(Site, Site.id == Alert.site_id)
        .where(Alert.status == AlertStatus.QUEUED, ~has_delivery).order_by(Alert.id).limit(limit)
    ).all()
    return sum(enqueue_deliveries(session, alert, site_name, now) for alert, site_name in orphans)


def _claim(session: Session, now: datetime, policy: DeliveryPolicy) -> list[Claimed]:
    query = (
        sa.select(AlertDelivery)
        .where(
            AlertDelivery.status == DeliveryStatus.PENDING,
            sa.or_(AlertDelivery.next_attempt_at.is_(None), AlertDelivery.next_attempt_at <= now),
            sa.or_(AlertDelivery.claimed_until.is_(None), AlertDelivery.claimed_until < now),
        )
        .order_by(AlertDelivery.next_attempt_at, AlertDelivery.id)
        .limit(policy.batch)
    )
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    claimed = []
    for delivery in session.scalars(query).all():
        alert = session.get(Alert, delivery.alert_id)
        channel = session.get(AlertChannel, delivery.channel_id)
        assert alert is not None and channel is not None
        frame = session.get(Frame, alert.frame_id)
        site = session.get(Site, alert.site_id)
        camera = session.get(Camera, alert.camera_id)
        assert frame is not None and site is not None and camera is not None
        delivery.attempts += 1
        delivery.claimed_until = now + timedelta(seconds=policy.lease_s)
        claimed.append(Claimed(delivery.id, channel.name, channel.kind, channel.url, delivery.attempts,
                               alert_payload(alert, site.name, camera.name, frame)))
    return claimed


def http_sender(client: httpx.Client) -> Sender:
    # httpx logs every request with its full URL at INFO; webhook URLs carry secrets.
    for name in ("httpx", "httpcore"):
        logging.getLogger(name).setLevel(logging.WARNING)

    def send(item: Claimed) -> None:
        if item.kind is ChannelKind.LOG:
            log.info("alert %s: site %s camera %s frame %s (%s, %s)", item.payload["idempotency_key"], item.payload["site"],
                     item.payload["camera"], item.payload["frame_id"], item.payload["stage"], item.payload["source"])
            return
        assert item.url is not None
        response = client.post(item.url, json=item.payload, headers={"Idempotency-Key": item.payload["idempotency_key"]})
        if not response.is_success:
            raise RuntimeError(f"HTTP {response.status_code} from {shown_url(item.url)}")
    return send


def _finish_alert(session: Session, alert_id: int, now: datetime) -> None:
    alert = session.get(Alert, alert_id)
    if alert is None or alert.status is not AlertStatus.QUEUED:
        return
    statuses = list(session.scalars(sa.select(AlertDelivery.status).where(AlertDelivery.alert_id == alert_id)))
    if DeliveryStatus.PENDING in statuses or not statuses:
        return
    status = AlertStatus.SENT if all(s is DeliveryStatus.DELIVERED for s in statuses) else AlertStatus.DEAD
    alert.status = status
    if status is AlertStatus.SENT:
        alert.delivered_at = now
    count_on_commit(session, ALERTS.labels(site=str(alert.site_id), stage=alert.stage.value, status=status.value))


def _record(session: Session, item: Claimed, error: str | None, now: datetime, policy: DeliveryPolicy) -> str:
    delivery = session.get(AlertDelivery, item.delivery_id)
    if delivery is None:
        return "gone"
    delivery.claimed_until = None
    if error is None:
        delivery.status, delivery.delivered_at, delivery.last_error = DeliveryStatus.DELIVERED, now, None
        outcome = "delivered"
    elif delivery.attempts >= policy.max_attempts:
        delivery.status, delivery.last_error = DeliveryStatus.DEAD, error[:1000]
        outcome = "dead"
    else:
        delivery.next_attempt_at = now + timedelta(seconds=backoff_delay(delivery.attempts, policy))
        delivery.last_error = error[:1000]
        outcome = "retry"
    alert = session.get(Alert, delivery.alert_id)
    if alert is not None and error is not None:
        alert.last_error = f"{item.channel}: {error}"[:1000]
    session.flush()
    _finish_alert(session, delivery.alert_id, now)
    return outcome


@dataclass(frozen=True)
class DeliveryReport:
    delivered: int
    retried: int
    dead: int


def deliver_due(
    factory: sessionmaker[Session], now: datetime, send: Sender, policy: DeliveryPolicy = DeliveryPolicy()
) -> DeliveryReport:
    """Claim the deliveries due at ``now``, send them, record the outcomes."""
    with write_transaction(factory) as session:
        enqueue_orphans(session, now)
        claimed = _claim(session, now, policy)
    counts = {"delivered": 0, "retry": 0, "dead": 0, "gone": 0}
    for item in claimed:
        try:
            send(item)
            error = None
        except Exception as exc:  # noqa: BLE001 - any failure of a receiver is a retry
            error = redact_text(f"{type(exc).__name__}: {exc}")
            log.warning("alert delivery %s to channel %s failed (attempt %d): %s", item.payload["idempotency_key"],
                        item.channel, item.attempts, error)
        with write_transaction(factory) as session:
            outcome = _record(session, item, error, now, policy)
        counts[outcome] += 1
        DELIVERIES.labels(channel=item.channel, outcome=outcome).inc()
    return DeliveryReport(counts["delivered"], counts["retry"], counts["dead"])


def outbox_depth(session: Session) -> int:
    depth = session.scalar(sa.select(sa.func.count()).select_from(AlertDelivery).where(AlertDelivery.status == DeliveryStatus.PENDING)) or 0
    OUTBOX_DEPTH.set(depth)
    return depth
