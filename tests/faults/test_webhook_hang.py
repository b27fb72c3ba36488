"""A webhook receiver that hangs (accepts, never answers) or trickles bytes, on both databases.

Real HTTP receivers on loopback (tests/shadow/receiver.py). The hung-channel test runs the
real shadow loop (`run_shadow_loop`) in a thread and measures what a user sees: when the
alerts reach the healthy receiver, that the loop's other jobs keep running, and when the
hung receiver gets them after it recovers. The recovery after a long outage runs on a
simulated clock (``deliver_due`` at chosen ``now`` values), as test_webhook_outage.py does.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from bearwatch.schema import Alert, AlertDelivery, AlertStatus, ChannelKind, DeliveryStatus, Stage, utcnow
from shadow.alerts import process_new_flags
from shadow.delivery import DeliveryPolicy, deliver_due, http_sender, outbox_depth
from shadow.loop import Job, run_shadow_loop
from tests.conftest import wait_for
from tests.shadow.helpers import add_channel, add_frame, at, make_park
from tests.shadow.receiver import Mode, Receiver, free_port

N_ALERTS = 10


@pytest.fixture
def receivers() -> Iterator[list[Receiver]]:
    made: list[Receiver] = []
    yield made
    for r in made:
        r.stop()


def _receiver(receivers: list[Receiver], mode: Mode = "ok") -> Receiver:
    r = Receiver(free_port(), mode=mode)
    r.start()
    receivers.append(r)
    return r


def _queue_alerts(factory: sessionmaker[Session], now: datetime) -> None:
    park = make_park(factory, stage=Stage.EXPANDED, thresholds={"alert_cooldown_s": 0})
    for i in range(N_ALERTS):  # distinct capture times: ten alerts, not one merged
        add_frame(factory, park.cameras[i % 2], now - timedelta(seconds=30 - i), model_id=park.model_id, score=0.9)
    assert process_new_flags(factory, now, max_age_s=None).alerts == N_ALERTS


def _claims(factory: sessionmaker[Session], channel_id: int) -> int:
    """Deliveries of the channel claimed and not yet recorded: the requests in flight."""
    with factory() as session:
        return session.scalar(sa.select(sa.func.count()).select_from(AlertDelivery).where(
            AlertDelivery.channel_id == channel_id, AlertDelivery.status == DeliveryStatus.PENDING,
            AlertDelivery.claimed_until.is_not(None))) or 0


def _errors(factory: sessionmaker[Session], channel_id: int) -> list[str]:
    with factory() as session:
        return [e or "" for e in session.scalars(sa.select(AlertDelivery.last_error).where(AlertDelivery.channel_id == channel_id))]


@pytest.mark.timeout(180)
def test_a_hung_receiver_delays_neither_another_channel_nor_the_loop(
    factory: sessionmaker[Session], receivers: list[Receiver]
) -> None:
    hung, healthy = _receiver(receivers, "hang"), _receiver(receivers)
    stuck_id = add_channel(factory, "stuck-hook", ChannelKind.WEBHOOK, hung.url)  # first: its deliveries sort first
    add_channel(factory, "ops-hook", ChannelKind.WEBHOOK, healthy.url)
    _queue_alerts(factory, utcnow())
    # A long deadline, so that one request holding the loop would show as a gap of 10 s or more.
    policy = DeliveryPolicy(timeout_s=10)
    ticks: list[float] = []
    stop = threading.Event()
    loop = threading.Thread(target=run_shadow_loop, args=(factory, stop), daemon=True, kwargs={
        "interval_s": 0.2, "policy": policy, "echo": lambda line: None,
        "extra_jobs": [Job("tick", lambda f, n: ticks.append(time.monotonic()))]})
    held: list[int] = []  # the hung channel's requests in flight, sampled while waiting

    def sampling(check: Callable[[], bool]) -> Callable[[], bool]:
        return lambda: held.append(_claims(factory, stuck_id)) or check()

    started = time.monotonic()
    loop.start()
    try:
        wait_for("every alert at the healthy receiver", sampling(lambda: len(healthy.keys) == N_ALERTS), timeout=30)
        # Keep watching past the first deadline, so the hung channel's retries happen meanwhile.
        wait_for("the hung channel's first deadline",
                 sampling(lambda: any("within 10 s" in e for e in _errors(factory, stuck_id))), timeout=40)
        time.sleep(1)
        watched = time.monotonic()
        assert hung.hung >= 1 and not hung.keys
        assert max(t for t, _ in healthy.arrivals) - started < 10, "the healthy channel waited for the hung one"
        assert set(healthy.keys.values()) == {1}
        gaps = [b - a for a, b in zip([started, *ticks], [*ticks, watched], strict=True)]
        assert max(gaps) < 6, f"the loop's other jobs stalled for {max(gaps):.1f} s"
        assert max(held) == policy.senders, "not the channel's pool size in flight to the hung receiver"
        with factory() as session:  # what `bearwatch alerts` shows for the hung channel
            errors = [a.last_error or "" for a in session.scalars(sa.select(Alert))]
        assert any("stuck-hook: DeadlineExceeded: no complete answer" in e for e in errors)
        assert all("secret-token" not in e for e in errors)

        hung.recover()
        recovered = time.monotonic()
        wait_for("every alert at the recovered receiver", lambda: len(hung.keys) == N_ALERTS, timeout=30)
        assert max(t for t, _ in hung.arrivals) - recovered < 30
        wait_for("the outbox empty", lambda: _depth(factory) == 0, timeout=15)
    finally:
        stop.set()
        loop.join(timeout=60)
    assert not loop.is_alive(), "the loop did not stop"
    assert set(hung.keys.values()) == {1} and set(healthy.keys.values()) == {1}, "an alert delivered twice"
    with factory() as session:
        assert {a.status for a in session.scalars(sa.select(Alert))} == {AlertStatus.SENT}


def _depth(factory: sessionmaker[Session]) -> int:
    with factory() as session:
        return outbox_depth(session)


@pytest.mark.timeout(120)
def test_a_trickling_receiver_is_cut_at_the_whole_request_deadline(
    factory: sessionmaker[Session], receivers: list[Receiver]
) -> None:
    trickle = _receiver(receivers, "trickle")  # a header byte every 0.2 s: never a 1 s read timeout
    channel_id = add_channel(factory, "slow-hook", ChannelKind.WEBHOOK, trickle.url)
    park = make_park(factory, stage=Stage.EXPANDED)
    add_frame(factory, park.cameras[0], at(0), model_id=park.model_id, score=0.9)
    process_new_flags(factory, at(1), max_age_s=None)
    policy = DeliveryPolicy(timeout_s=1)
    took: list[float] = []

    def one_pass() -> None:
        with httpx.Client(timeout=policy.timeout_s) as client:
            begun = time.monotonic()
            deliver_due(factory, at(2), http_sender(client), policy)
            took.append(time.monotonic() - begun)

    sender = threading.Thread(target=one_pass, daemon=True)
    sender.start()
    sender.join(timeout=20)
    alive = sender.is_alive()
    trickle.stop()  # ends the trickle, so a sender still stuck in it comes back
    sender.join(timeout=20)
    assert not alive and took and took[0] < 8, "a trickling receiver held the sender past its deadline"
    assert trickle.hung == 1
    with factory() as session:
        delivery = session.scalars(sa.select(AlertDelivery).where(AlertDelivery.channel_id == channel_id)).one()
    assert (delivery.status, delivery.attempts) == (DeliveryStatus.PENDING, 1)
    assert "DeadlineExceeded: no complete answer from http://127.0.0.1" in (delivery.last_error or "")
    assert "within 1 s" in (delivery.last_error or "")


OUTAGE_S = 6 * 60  # long enough that the old schedule had reached its 256 s step
STEP_S = 15


@pytest.mark.timeout(300)
def test_a_hung_receiver_that_recovers_gets_every_alert_once_within_a_minute(
    factory: sessionmaker[Session], receivers: list[Receiver]
) -> None:
    hung = _receiver(receivers, "hang")
    channel_id = add_channel(factory, "ops-hook", ChannelKind.WEBHOOK, hung.url)
    park = make_park(factory, stage=Stage.EXPANDED, thresholds={"alert_cooldown_s": 0})
    policy = DeliveryPolicy(timeout_s=0.3)  # the default retry schedule; a short deadline keeps the test fast
    now = at(0)
    with httpx.Client(timeout=policy.timeout_s) as client:
        send = http_sender(client)
        for step in range(OUTAGE_S // STEP_S):
            if step < N_ALERTS:  # bears keep coming early in the outage: the alerts' retries fall out of step
                add_frame(factory, park.cameras[0], now, model_id=park.model_id, score=0.9)
                process_new_flags(factory, now, max_age_s=None)
            assert deliver_due(factory, now, send, policy).delivered == 0
            now += timedelta(seconds=STEP_S)
        errors = _errors(factory, channel_id)
        assert len(errors) == N_ALERTS and all("no complete answer" in e and "within 0.3 s" in e for e in errors)
        with factory() as session:
            assert AlertStatus.DEAD not in set(session.scalars(sa.select(Alert.status))), "an outage of minutes must not dead-letter"
        hung.recover()
        recovered = now
        arrived_at: dict[str, datetime] = {}
        while len(arrived_at) < N_ALERTS and now < recovered + timedelta(seconds=300):
            deliver_due(factory, now, send, policy)
            for key in hung.keys:
                arrived_at.setdefault(key, now)
            now += timedelta(seconds=STEP_S)
        for _ in range(3):  # nothing more goes out
            deliver_due(factory, now, send, policy)
            now += timedelta(seconds=STEP_S)
    assert len(arrived_at) == N_ALERTS
    first, last = min(arrived_at.values()), max(arrived_at.values())
    # The first within one capped backoff (60 s) and one step of this simulated clock (the
    # old schedule waited out its 256 s step); the rest with it, not each after its own backoff.
    assert first - recovered <= timedelta(seconds=60 + STEP_S), f"the first alert arrived {first - recovered} after the recovery"
    assert last == first, f"the last alert arrived {last - first} after the first"
    assert set(hung.keys.values()) == {1}, "an alert delivered twice"
    with factory() as session:
        rows = list(session.scalars(sa.select(AlertDelivery)))
        assert outbox_depth(session) == 0
        assert {a.status for a in session.scalars(sa.select(Alert))} == {AlertStatus.SENT}
    # Every request that hung was an attempt, counted on its alert as before.
    assert all(r.attempts >= 2 and r.status is DeliveryStatus.DELIVERED for r in rows)
    assert sum(r.attempts for r in rows) >= hung.hung + N_ALERTS
