"""The webhook receiver down for minutes, with the shadow outbox's default retry policy.

The clock is simulated (``deliver_due`` runs at chosen ``now`` values, every 15 s of
simulated time) so ten minutes of outage take a second; the database and the HTTP
receiver on loopback are real. A short real-process outage through `bearwatch shadow`
is tests/shadow/test_loop.py `test_limited_site_end_to_end`; 503 answers and backoff
are tests/shadow/test_delivery.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from bearwatch.schema import Alert, AlertStatus, ChannelKind, Stage
from shadow.alerts import process_new_flags
from shadow.delivery import DeliveryPolicy, deliver_due, http_sender, outbox_depth
from tests.shadow.helpers import add_channel, add_frame, at, make_park
from tests.shadow.receiver import Receiver, free_port

OUTAGE_S = 10 * 60
STEP_S = 15


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver(free_port())
    yield r
    r.stop()


def test_ten_minutes_without_the_receiver_then_every_alert_arrives_once(
    factory: sessionmaker[Session], receiver: Receiver
) -> None:
    park = make_park(factory, stage=Stage.EXPANDED, thresholds={"alert_cooldown_s": 0})
    add_channel(factory, "ops-hook", ChannelKind.WEBHOOK, receiver.url)
    policy = DeliveryPolicy(timeout_s=1)  # the defaults, but a refused connection fails fast anyway
    now = at(0)
    with httpx.Client(timeout=policy.timeout_s) as client:
        send = http_sender(client)
        elapsed = 0
        while elapsed < OUTAGE_S:  # bears keep coming while the receiver is down
            if elapsed % 120 == 0:
                add_frame(factory, park.cameras[0], now, model_id=park.model_id, score=0.9)
                process_new_flags(factory, now, max_age_s=None)
            assert deliver_due(factory, now, send, policy).delivered == 0
            now += timedelta(seconds=STEP_S)
            elapsed += STEP_S
        with factory() as session:
            statuses = list(session.scalars(sa.select(Alert.status)))
        assert len(statuses) == 5 and AlertStatus.DEAD not in statuses, "an outage of minutes must not dead-letter"
        receiver.start()
        for _ in range(int(policy.max_delay_s / STEP_S) + 2):  # at most one capped backoff later
            deliver_due(factory, now, send, policy)
            now += timedelta(seconds=STEP_S)
    assert len(receiver.keys) == 5 and set(receiver.keys.values()) == {1}, "every alert once, none twice"
    with factory() as session:
        assert outbox_depth(session) == 0
        assert {a.status for a in session.scalars(sa.select(Alert))} == {AlertStatus.SENT}
