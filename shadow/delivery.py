"""The alert outbox: one delivery row per alert and channel (unique), delivered by a loop
that POSTs JSON to webhooks with an Idempotency-Key, retries with capped exponential
backoff and gives up (dead letter) after N attempts. A receiver that is down loses
nothing: the rows wait in the database until it is back.

A delivery is claimed (attempt counted, lease set) and committed *before* it is sent,
so an undo can tell an alert that may already be out from one that surely is not.

Requests go out on a small pool of threads per channel (:class:`Outbox`), each under a
whole-request deadline, so a hung receiver holds only its own channel's threads: other
channels and the shadow loop's other jobs go on. Only the caller's thread touches the
database (claims and outcomes); the pool threads only send. A channel is given no more
claims than it has free threads, so nothing claimed waits in a queue past its lease.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit, urlunsplit

import httpx
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from bearwatch.db import write_transaction
from bearwatch.localtime import local_text
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
    Prediction,
    Site,
    WebhookFormat,
)
from bearwatch.smtp_url import parse_smtp_url
from shadow.alert_rules import is_late
from shadow.deadline import SocketCutter, cut_after
from shadow.email_channel import send_email
from shadow.metrics import ALERTS, DELIVERIES, OUTBOX_DEPTH, count_on_commit
from shadow.webhook_formats import webhook_body

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DeliveryPolicy:
    max_attempts: int = 64  # about an hour of retries at the default delays: an outage of minutes loses nothing
    base_delay_s: float = 2.0
    max_delay_s: float = 60.0  # short, so a receiver back from an outage gets its alerts within a minute
    timeout_s: float = 5.0  # a whole HTTP request, connect to last byte (not per read)
    lease_s: float = 60.0  # a crashed sender's claim expires after this
    senders: int = 4  # requests in flight per channel
    pass_s: float = 1.0  # a delivery pass waits at most this long for answers; later ones are recorded next pass

    def __post_init__(self) -> None:
        if self.senders < 1 or self.base_delay_s <= 0:
            raise ValueError("senders must be at least 1 and base_delay_s above 0")
        # A claim must outlast its request (connect timeout plus the deadline), or a second
        # sender could take it while the first is still sending.
        if self.lease_s <= 2 * self.timeout_s:
            raise ValueError(f"lease_s ({self.lease_s:g}) must exceed twice timeout_s ({self.timeout_s:g})")


def backoff_delay(attempts: int, policy: DeliveryPolicy) -> float:
    """Seconds before the next try after ``attempts`` failed ones: base, 2x base, ... capped."""
    return min(policy.max_delay_s, policy.base_delay_s * 2 ** max(attempts - 1, 0))


def channel_serves(channel_sites: list[str], site_name: str) -> bool:
    return not channel_sites or site_name in channel_sites


def shown_url(url: str | None) -> str:
    """A webhook URL for people: credentials masked and the path hidden (webhook paths
    often are the secret). An e-mail target shows its server and addresses, password masked."""
    if not url:
        return "-"
    if url.startswith(("smtp://", "smtps://")):
        try:
            return parse_smtp_url(url).shown()
        except ValueError:
            pass  # not a valid target: shown like any URL
    parts = urlsplit(redact_url(url))
    return urlunsplit((parts.scheme, parts.netloc, "/..." if parts.path not in ("", "/") else parts.path, "", ""))


NO_CHANNEL = "no enabled alert channel serves this site; add one under alerts.channels in the park file"

Channels = list[tuple[int, list[str]]]  # enabled channels: id and the sites served (empty: all)


def enabled_channels(session: Session) -> Channels:
    return [(channel_id, sites or []) for channel_id, sites in session.execute(
        sa.select(AlertChannel.id, AlertChannel.sites).where(AlertChannel.enabled.is_(True)).order_by(AlertChannel.id)
    )]


def serving(channels: Channels, site_name: str) -> list[int]:
    """The ids of the channels that serve a site."""
    return [channel_id for channel_id, sites in channels if channel_serves(sites, site_name)]


def enqueue_deliveries(session: Session, alert: Alert, site_name: str, now: datetime) -> int:
    """Put a queued alert in the outbox of every enabled channel that serves its site."""
    channel_ids = serving(enabled_channels(session), site_name)
    session.add_all([AlertDelivery(alert_id=alert.id, channel_id=channel_id, next_attempt_at=now) for channel_id in channel_ids])
    if not channel_ids:
        alert.last_error = NO_CHANNEL
    session.flush()
    return len(channel_ids)


def enqueue_many(session: Session, targets: Iterable[tuple[int, Sequence[int]]], now: datetime) -> int:
    """:func:`enqueue_deliveries` for many alerts in one statement: each (alert id, the
    channels serving its site, from :func:`serving`). The caller sets NO_CHANNEL on the
    alerts no channel serves (it knows before it writes them)."""
    rows = [{"alert_id": alert_id, "channel_id": channel_id, "next_attempt_at": now}
            for alert_id, channel_ids in targets for channel_id in channel_ids]
    if rows:
        session.execute(sa.insert(cast(sa.Table, AlertDelivery.__table__)), rows)
    return len(rows)


def alert_payload(alert: Alert, site: str, camera: str, frame: Frame, now: datetime,
                  score: float | None = None, zone_name: str | None = None) -> dict[str, Any]:
    """The JSON a receiver gets. ``unconfirmed``: a held alert no ranger decided in time
    (shadow.escalation); while it is still held, its key differs from the confirmed
    alert's, so a receiver that drops repeats still gets the confirmation. ``late``: its
    frame was captured longer ago than the flag staleness window (a verdict on an old
    frame at a site with ``late_alerts: marked``, or a delivery after a long outage).
    ``score``: the alerting model's score of the frame (None for a ranger's sighting).
    ``captured_local``: the capture time on the site's clock (``zone_name``), for people."""
    unconfirmed = alert.escalated_at is not None and alert.decision_id is None
    held = alert.status is AlertStatus.PENDING
    return {
        "idempotency_key": alert.idempotency_key + (":unconfirmed" if held else ""),
        "unconfirmed": unconfirmed,
        "late": is_late(frame.captured_at, now),
        "alert_id": alert.id,
        "site": site,
        "camera": camera,
        "frame_id": alert.frame_id,
        "captured_at": frame.captured_at.isoformat(),
        "captured_local": local_text(frame.captured_at, zone_name, seconds=True),
        "frame_path": frame.path,
        "score": score,
        "stage": alert.stage.value,
        "source": alert.source.value,
        "model_version_id": alert.model_version_id,
        "flag_count": alert.flag_count,
        "created_at": alert.created_at.isoformat(),
    }


@dataclass(frozen=True)
class Claimed:
    delivery_id: int
    channel_id: int
    channel: str
    kind: ChannelKind
    url: str | None
    attempts: int
    payload: dict[str, Any]
    format: WebhookFormat = WebhookFormat.BEARWATCH


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


def _claim(session: Session, now: datetime, policy: DeliveryPolicy, free: Callable[[int], int],
           skip: set[int]) -> list[Claimed]:
    """Claim due deliveries, per channel at most ``free(channel_id)`` of them, never one in ``skip``
    (still being sent here)."""
    due: list[sa.ColumnElement[bool]] = [
        AlertDelivery.status == DeliveryStatus.PENDING,
        sa.or_(AlertDelivery.next_attempt_at.is_(None), AlertDelivery.next_attempt_at <= now),
        sa.or_(AlertDelivery.claimed_until.is_(None), AlertDelivery.claimed_until < now),
    ]
    if skip:
        due.append(AlertDelivery.id.not_in(skip))
    claimed = []
    for channel_id in sorted(session.scalars(sa.select(AlertDelivery.channel_id).where(*due).distinct())):
        slots = free(channel_id)
        if slots <= 0:
            continue  # its threads are busy (a slow or hung receiver): claim nothing that would wait
        query = (sa.select(AlertDelivery).where(*due, AlertDelivery.channel_id == channel_id)
                 .order_by(AlertDelivery.next_attempt_at, AlertDelivery.id).limit(slots))
        if session.get_bind().dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True)
        deliveries = session.scalars(query).all()
        if not deliveries:
            continue
        channel = session.get(AlertChannel, channel_id)
        assert channel is not None
        details = _alert_details(session, {d.alert_id for d in deliveries})
        for delivery in deliveries:
            alert, frame, site, zone, camera, score = details[delivery.alert_id]
            delivery.attempts += 1
            delivery.claimed_until = now + timedelta(seconds=policy.lease_s)
            claimed.append(Claimed(delivery.id, channel.id, channel.name, channel.kind, channel.url, delivery.attempts,
                                   alert_payload(alert, site, camera, frame, now, score, zone), channel.format))
    return claimed


def _alert_details(session: Session, alert_ids: set[int]) -> dict[int, Any]:
    """What the payloads of ``alert_ids`` need (alert, frame, site name and time zone, camera
    name, the alerting model's score of the frame), in one statement for a channel's
    claims, not five per delivery."""
    rows = session.execute(
        sa.select(Alert, Frame, Site.name, Site.timezone, Camera.name, Prediction.positive_score)
        .join(Frame, Frame.id == Alert.frame_id)
        .join(Site, Site.id == Alert.site_id)
        .join(Camera, Camera.id == Alert.camera_id)
        .outerjoin(Prediction, sa.and_(Prediction.frame_id == Alert.frame_id,
                                       Prediction.model_version_id == Alert.model_version_id))
        .where(Alert.id.in_(alert_ids))
    ).all()
    return {row[0].id: tuple(row) for row in rows}


class DeadlineExceeded(Exception):
    """A receiver took longer than the whole-request deadline (hung, or trickling bytes)."""


def _traced(cutter: SocketCutter) -> Callable[[str, dict[str, Any]], None]:
    """httpcore's ``trace`` extension: hands the request's socket to the cutter as it opens."""

    def trace(event: str, info: dict[str, Any]) -> None:
        if event.endswith((".connect_tcp.complete", ".start_tls.complete")):
            stream = info.get("return_value")
            cutter.attach(stream.get_extra_info("socket") if stream is not None else None)

    return trace


def http_sender(client: httpx.Client, deadline_s: float | None = None, *, frames_dir: Path | None = None) -> Sender:
    """Send to every channel kind: POST to webhooks through ``client``, e-mail over SMTP
    (shadow.email_channel; the frame attached from ``frames_dir``); a whole request is cut
    after ``deadline_s`` (default: the client's read timeout)."""
    # httpx logs every request with its full URL at INFO; webhook URLs carry secrets.
    for name in ("httpx", "httpcore"):
        logging.getLogger(name).setLevel(logging.WARNING)
    limit = deadline_s if deadline_s is not None else client.timeout.read

    def send(item: Claimed) -> None:
        if item.kind is ChannelKind.LOG:
            log.info("alert %s: site %s camera %s frame %s (%s, %s)", item.payload["idempotency_key"], item.payload["site"],
                     item.payload["camera"], item.payload["frame_id"], item.payload["stage"], item.payload["source"])
            return
        assert item.url is not None
        if item.kind is ChannelKind.EMAIL:
            send_email(item.url, item.payload, frames_dir=frames_dir, deadline_s=limit)
            return
        if limit is None:
            response = _post(client, item, None)
        else:
            with cut_after(limit) as cutter:
                try:
                    response = _post(client, item, cutter)
                except httpx.HTTPError as exc:
                    if cutter.timed_out(isinstance(exc, httpx.TimeoutException)):
                        raise DeadlineExceeded(f"no complete answer from {shown_url(item.url)} within {limit:g} s") from None
                    raise
        if not response.is_success:
            raise RuntimeError(f"HTTP {response.status_code} from {shown_url(item.url)}")
    return send


def _post(client: httpx.Client, item: Claimed, cutter: SocketCutter | None) -> httpx.Response:
    assert item.url is not None
    # Connection: close: every request opens its own connection, so the cutter always sees
    # the socket (a reused keep-alive connection has no connect step to trace).
    return client.post(item.url, json=webhook_body(item.format, item.payload),
                       headers={"Idempotency-Key": item.payload["idempotency_key"], "Connection": "close"},
                       extensions={"trace": _traced(cutter)} if cutter is not None else {})


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
        # The receiver answers again: its alerts waiting out a backoff go now, not a minute later.
        session.execute(
            sa.update(AlertDelivery)
            .where(AlertDelivery.channel_id == item.channel_id, AlertDelivery.status == DeliveryStatus.PENDING,
                   AlertDelivery.next_attempt_at > now)
            .values(next_attempt_at=now)
        )
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
    in_flight: int = 0  # still being sent when the pass returned; a later pass records them
    gone: int = 0  # deliveries deleted while being sent


def _attempt(send: Sender, item: Claimed) -> str | None:
    """Send one delivery (on a pool thread); the error to record, or None."""
    try:
        send(item)
        return None
    except Exception as exc:  # noqa: BLE001 - any failure of a receiver is a retry
        error = redact_text(f"{type(exc).__name__}: {exc}")
        log.warning("alert delivery %s to channel %s failed (attempt %d): %s", item.payload["idempotency_key"],
                    item.channel, item.attempts, error)
        return error


class Outbox:
    """Delivers the outbox on a bounded pool of threads per channel. Kept across passes by
    the shadow loop: a pass returns after at most ``policy.pass_s`` of waiting, and what is
    still in flight is recorded by a later pass. Call from one thread only."""

    def __init__(self, send: Sender, policy: DeliveryPolicy = DeliveryPolicy()) -> None:
        self.send, self.policy = send, policy
        self._pools: dict[int, ThreadPoolExecutor] = {}
        self._in_flight: dict[Future[str | None], Claimed] = {}

    def _free(self, channel_id: int) -> int:
        return self.policy.senders - sum(1 for item in self._in_flight.values() if item.channel_id == channel_id)

    def _send_due(self, factory: sessionmaker[Session], now: datetime, *, orphans: bool) -> list[Future[str | None]]:
        skip = {item.delivery_id for item in self._in_flight.values()}
        with write_transaction(factory) as session:  # committed before anything is sent
            if orphans:
                enqueue_orphans(session, now)
            claimed = _claim(session, now, self.policy, self._free, skip)
        sent = []
        for item in claimed:
            pool = self._pools.get(item.channel_id)
            if pool is None:
                pool = self._pools[item.channel_id] = ThreadPoolExecutor(
                    self.policy.senders, thread_name_prefix=f"alerts-{item.channel_id}")
            future = pool.submit(_attempt, self.send, item)
            self._in_flight[future] = item
            sent.append(future)
        return sent

    def _record_done(self, factory: sessionmaker[Session], now: datetime, counts: dict[str, int]) -> None:
        for future in [f for f in self._in_flight if f.done()]:
            item = self._in_flight[future]
            with write_transaction(factory) as session:
                outcome = _record(session, item, future.result(), now, self.policy)
            del self._in_flight[future]  # only once recorded: a database error keeps it for the next pass
            counts[outcome] += 1
            DELIVERIES.labels(channel=item.channel, outcome=outcome).inc()

    def _report(self, counts: dict[str, int]) -> DeliveryReport:
        return DeliveryReport(counts["delivered"], counts["retry"], counts["dead"], len(self._in_flight), counts["gone"])

    def run(self, factory: sessionmaker[Session], now: datetime) -> DeliveryReport:
        """One pass: record finished sends, claim what is due for channels with free threads,
        send, and record the answers that come within ``policy.pass_s``. Requests sent by
        earlier passes (a hung receiver) do not hold the pass."""
        counts = {"delivered": 0, "retry": 0, "dead": 0, "gone": 0}
        until = time.monotonic() + self.policy.pass_s
        mine: list[Future[str | None]] = []
        first = True
        while True:
            self._record_done(factory, now, counts)
            mine = [f for f in mine if f in self._in_flight] + self._send_due(factory, now, orphans=first)
            first = False
            left = until - time.monotonic()
            if not mine or left <= 0:
                break
            wait(mine, timeout=left, return_when=FIRST_COMPLETED)
        return self._report(counts)

    def drain(self, factory: sessionmaker[Session], now: datetime, timeout_s: float | None = None) -> DeliveryReport:
        """Wait for what is in flight (at most ``timeout_s``) and record it."""
        counts = {"delivered": 0, "retry": 0, "dead": 0, "gone": 0}
        wait(list(self._in_flight), timeout=timeout_s)
        self._record_done(factory, now, counts)
        return self._report(counts)

    def close(self) -> None:
        """Stop the pools; a request still running ends by its deadline. Its claim expires
        after the lease and it is sent again (the receiver drops repeats by key)."""
        for pool in self._pools.values():
            pool.shutdown(wait=False, cancel_futures=True)
        self._pools.clear()


def deliver_due(
    factory: sessionmaker[Session], now: datetime, send: Sender, policy: DeliveryPolicy = DeliveryPolicy()
) -> DeliveryReport:
    """Send everything due at ``now`` and record the outcomes, waiting for every answer
    (the shadow loop keeps one :class:`Outbox` instead, whose passes do not wait)."""
    outbox = Outbox(send, policy)
    total = {"delivered": 0, "retry": 0, "dead": 0}
    try:
        while True:  # rounds until nothing more is due: a channel's threads take `senders` at a time
            done = 0
            for report in (outbox.run(factory, now), outbox.drain(factory, now)):
                done += report.delivered + report.retried + report.dead + report.gone
                total["delivered"] += report.delivered
                total["retry"] += report.retried
                total["dead"] += report.dead
            if done == 0:
                break
    finally:
        outbox.close()
    return DeliveryReport(total["delivered"], total["retry"], total["dead"])


def outbox_depth(session: Session) -> int:
    depth = session.scalar(sa.select(sa.func.count()).select_from(AlertDelivery).where(AlertDelivery.status == DeliveryStatus.PENDING)) or 0
    OUTBOX_DEPTH.set(depth)
    return depth
