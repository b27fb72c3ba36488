"""The alert outbox on SQLite and PostgreSQL with a real HTTP receiver on loopback."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import timedelta

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from bearwatch.park_apply import apply_config
from bearwatch.park_file import check_config_text
from bearwatch.schema import (
    Alert,
    AlertChannel,
    AlertDelivery,
    AlertStatus,
    ChannelKind,
    DeliveryStatus,
    Stage,
    Verdict,
    utcnow,
)
from shadow.alerts import process_new_flags
from shadow.delivery import (
    Claimed,
    DeliveryPolicy,
    Outbox,
    backoff_delay,
    deliver_due,
    http_sender,
    outbox_depth,
    shown_url,
)
from shadow.verdicts import submit_verdict
from tests.shadow.helpers import add_channel, add_frame, add_user, at, make_park
from tests.shadow.receiver import Receiver, free_port


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver(free_port())
    yield r
    r.stop()


@pytest.mark.parametrize(("attempts", "expected"), [(1, 2.0), (2, 4.0), (3, 8.0), (8, 256.0), (9, 300.0), (30, 300.0)])
def test_backoff_is_exponential_and_capped(attempts: int, expected: float) -> None:
    assert backoff_delay(attempts, DeliveryPolicy(base_delay_s=2, max_delay_s=300)) == expected


def test_shown_url_hides_secrets() -> None:
    assert shown_url("https://user:pw@hooks.example.org/services/T0/B0/XYZ?token=abc") == "https://user:***@hooks.example.org/..."
    assert shown_url(None) == "-"


def test_a_receiver_that_is_down_loses_no_alert(factory: sessionmaker[Session], receiver: Receiver) -> None:
    park = make_park(factory, stage=Stage.EXPANDED, thresholds={"alert_cooldown_s": 0})
    add_channel(factory, "ops-hook", ChannelKind.WEBHOOK, receiver.url)
    add_channel(factory, "other-park", ChannelKind.WEBHOOK, receiver.url, sites=["south"])  # does not serve north
    for i in range(5):
        add_frame(factory, park.cameras[0], at(i), model_id=park.model_id, score=0.9)
    process_new_flags(factory, at(10), max_age_s=None)
    policy = DeliveryPolicy(base_delay_s=1, max_delay_s=8, max_attempts=20, timeout_s=2)
    with httpx.Client(timeout=policy.timeout_s) as client:
        send = http_sender(client)
        now = at(10)
        # Down: every attempt fails, nothing is lost, backoff grows.
        for _ in range(3):
            report = deliver_due(factory, now, send, policy)
            assert report.delivered == 0
            now += timedelta(seconds=10)
        with factory() as session:
            assert outbox_depth(session) == 5
            rows = list(session.scalars(sa.select(AlertDelivery)))
            assert all(r.attempts == 3 and r.status is DeliveryStatus.PENDING for r in rows)
            assert all("ConnectError" in (r.last_error or "") for r in rows)
            assert all("secret-token" not in (r.last_error or "") for r in rows)
        # Back, but answering 503 twice first.
        receiver.start()
        receiver.fail_next = 2
        deadline = 20
        while receiver.keys.total() < 5 and deadline:
            deliver_due(factory, now, send, policy)
            now += timedelta(seconds=10)
            deadline -= 1
        for _ in range(3):  # more runs send nothing again
            deliver_due(factory, now, send, policy)
            now += timedelta(seconds=10)
    assert len(receiver.keys) == 5 and set(receiver.keys.values()) == {1}
    assert {b["site"] for b in receiver.bodies} == {"north"}
    with factory() as session:
        assert outbox_depth(session) == 0
        assert {a.status for a in session.scalars(sa.select(Alert))} == {AlertStatus.SENT}


def test_dead_letter_after_max_attempts(factory: sessionmaker[Session]) -> None:
    park = make_park(factory)
    add_channel(factory, "nowhere", ChannelKind.WEBHOOK, f"http://127.0.0.1:{free_port()}/")
    ana = add_user(factory, "ana")
    frame = add_frame(factory, park.cameras[0], at(0), model_id=park.model_id, score=0.1)
    submit_verdict(factory, frame, ana, Verdict.MISSED, at(1))
    policy = DeliveryPolicy(max_attempts=3, base_delay_s=1, max_delay_s=1, timeout_s=1)
    with httpx.Client(timeout=1) as client:
        for i in range(5):
            deliver_due(factory, at(10 + i * 5), http_sender(client), policy)
    with factory() as session:
        delivery = session.scalars(sa.select(AlertDelivery)).one()
        alert = session.scalars(sa.select(Alert)).one()
    assert (delivery.status, delivery.attempts) == (DeliveryStatus.DEAD, 3)
    assert alert.status is AlertStatus.DEAD and "nowhere" in (alert.last_error or "")


def test_park_file_configures_channels(factory: sessionmaker[Session]) -> None:
    make_park(factory)
    text = """
alerts:
  channels:
    - {name: ops, kind: webhook, url: "https://hooks.example.org/abc?token=s3cret", sites: [north]}
    - {name: demo-log, kind: log}
"""
    config, problems = check_config_text(text)
    assert problems == [] and config is not None
    with factory.begin() as session:
        report = apply_config(session, config, actor="test", now=utcnow())
    assert "alert channel ops (webhook https://hooks.example.org/...)" in report.created
    with factory.begin() as session:  # again: nothing to change
        assert apply_config(session, config, actor="test", now=utcnow()).created == []
    config2, _ = check_config_text("alerts: {channels: [{name: ops, kind: webhook, url: 'https://h.example.org/x'}]}")
    assert config2 is not None
    with factory.begin() as session:
        report = apply_config(session, config2, actor="test", now=utcnow())
    assert report.updated == ["alert channel ops", "alert channel demo-log disabled (not in the park file)"]
    with factory() as session:
        assert {c.name: c.enabled for c in session.scalars(sa.select(AlertChannel))} == {"ops": True, "demo-log": False}


@pytest.mark.parametrize(
    ("channel", "message"),
    [
        ("{name: a, kind: webhook}", "needs a url"),
        ("{name: a, kind: webhook, url: 'ftp://x'}", "needs a url"),
        ("{name: a, kind: log, url: 'http://x'}", "takes no url"),
        ("{name: a, kind: pager}", "Input should be 'webhook', 'log' or 'email'"),
        ("{name: a, kind: log, colour: red}", "unknown key"),
    ],
)
def test_channel_config_is_strict(channel: str, message: str) -> None:
    _, problems = check_config_text(f"alerts:\n  channels:\n    - {channel}\n")
    assert problems and message in str(problems[0]) and problems[0].line == 3


def test_alerts_queued_before_any_channel_go_out_once_one_exists(factory: sessionmaker[Session]) -> None:
    park = make_park(factory)
    ana = add_user(factory, "ana")
    frame = add_frame(factory, park.cameras[0], at(0), model_id=park.model_id, score=0.1)
    submit_verdict(factory, frame, ana, Verdict.MISSED, at(1))
    sent: list[str] = []
    deliver_due(factory, at(2), send=lambda item: sent.append(item.channel))
    with factory() as session:
        assert "no enabled alert channel" in (session.scalars(sa.select(Alert)).one().last_error or "")
    add_channel(factory, "late")
    deliver_due(factory, at(3), send=lambda item: sent.append(item.channel))
    deliver_due(factory, at(4), send=lambda item: sent.append(item.channel))
    assert sent == ["late"]
    with factory() as session:
        assert session.scalars(sa.select(Alert)).one().status is AlertStatus.SENT


def test_a_pass_does_not_wait_for_a_stuck_send_nor_send_it_twice(factory: sessionmaker[Session]) -> None:
    park = make_park(factory)
    ana = add_user(factory, "ana")
    frame = add_frame(factory, park.cameras[0], at(0), model_id=park.model_id, score=0.1)
    submit_verdict(factory, frame, ana, Verdict.MISSED, at(1))
    add_channel(factory, "stuck")
    release, calls = threading.Event(), []

    def stuck(item: Claimed) -> None:
        calls.append(item.delivery_id)
        release.wait(30)

    outbox = Outbox(stuck, DeliveryPolicy(pass_s=0.2))
    try:
        begun = time.monotonic()
        assert outbox.run(factory, at(2)).in_flight == 1
        assert time.monotonic() - begun < 5, "the pass waited for the stuck send"
        # Long past the claim's lease: still being sent here, so not claimed again.
        assert outbox.run(factory, at(2 + 3600)).in_flight == 1 and len(calls) == 1
        release.set()
        assert outbox.drain(factory, at(2 + 3601), timeout_s=10).delivered == 1
    finally:
        release.set()
        outbox.close()
    assert calls == [calls[0]]
    with factory() as session:
        assert session.scalars(sa.select(AlertDelivery)).one().attempts == 1


def test_claiming_a_channels_deliveries_costs_the_same_statements_for_2_and_for_12(factory: sessionmaker[Session]) -> None:
    """The outbox builds each claimed alert's payload from one statement per channel, not
    five per delivery (alert, frame, site, camera, score: 60 statements for 12 alerts);
    the payloads are unchanged: each its own alert's site, camera, frame and score."""
    from bearwatch.schema import Camera, Frame, Prediction
    from shadow.delivery import _claim
    from tests.statements import sql_sent

    park = make_park(factory, stage=Stage.EXPANDED, thresholds={"alert_cooldown_s": 0})
    add_channel(factory, "ops-hook", ChannelKind.WEBHOOK, "http://127.0.0.1:9/")
    policy = DeliveryPolicy()

    def claim(first: int, count: int, now_s: float) -> tuple[int, list[Claimed]]:
        frames = [add_frame(factory, park.cameras[i % 2], at(first + i), model_id=park.model_id, score=0.9 - i / 100)
                  for i in range(count)]
        process_new_flags(factory, at(now_s), max_age_s=None)
        with sql_sent(factory.kw["bind"]) as statements, factory.begin() as session:
            claimed = _claim(session, at(now_s), policy, lambda channel_id: 100, set())
        assert sorted(c.payload["frame_id"] for c in claimed) == frames
        return len([s for s in statements if not s.lstrip().upper().startswith(("BEGIN", "PRAGMA", "SET "))]), claimed

    two, _ = claim(0, 2, 10)
    twelve, claimed = claim(20, 12, 40)  # the first two are still claimed (their lease runs to 70 s)
    assert two == twelve, (two, twelve)
    with factory() as session:
        cameras = dict(session.execute(sa.select(Frame.id, Camera.name).join(Camera, Camera.id == Frame.camera_id)).all())
        scores = dict(session.execute(sa.select(Prediction.frame_id, Prediction.positive_score)).all())
    for item in claimed:
        frame_id = item.payload["frame_id"]
        assert (item.payload["site"], item.payload["camera"], item.payload["score"]) == ("north", cameras[frame_id], scores[frame_id])
        assert item.attempts == 1
    assert len({c.payload["alert_id"] for c in claimed}) == 12
