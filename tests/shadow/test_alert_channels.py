"""Alert channels besides the JSON webhook: e-mail through a real SMTP server on loopback
(aiosmtpd), and the Slack and Home Assistant webhook formats through the real receiver,
on SQLite and PostgreSQL. The bodies checked here are the ones docs/operations.md shows."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from prometheus_client import REGISTRY
from sqlalchemy.orm import Session, sessionmaker

from bearwatch.localtime import local_text
from bearwatch.park_apply import apply_config
from bearwatch.park_file import check_config_text
from bearwatch.schema import (
    AlertChannel,
    AlertDelivery,
    ChannelKind,
    DeliveryStatus,
    Site,
    Stage,
    Verdict,
    WebhookFormat,
)
from shadow.alerts import process_new_flags
from shadow.delivery import DeliveryPolicy, Outbox, deliver_due, http_sender, shown_url
from shadow.email_channel import message_id
from shadow.verdicts import submit_verdict
from shadow.webhook_formats import homeassistant_body, slack_body, webhook_body
from tests.shadow.helpers import T0, add_frame, add_user, at, make_park, write_jpeg
from tests.shadow.receiver import Receiver, free_port
from tests.shadow.smtp_server import PASSWORD, USER, HungServer, MailServer

TO = "rangers@park.example,ops@park.example"


def smtp_url(port: int, user: str = USER) -> str:
    return f"smtp://{user}:${{SMTP_PASSWORD}}@127.0.0.1:{port}?from=bearwatch@park.example&to={TO}"


@pytest.fixture
def mail() -> Iterator[MailServer]:
    server = MailServer(free_port())
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def smtp_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SMTP_PASSWORD", PASSWORD)


def _channel(factory: sessionmaker[Session], name: str, kind: ChannelKind, url: str,
             fmt: WebhookFormat = WebhookFormat.BEARWATCH) -> int:
    with factory.begin() as session:
        channel = AlertChannel(name=name, kind=kind, url=url, format=fmt, sites=[])
        session.add(channel)
        session.flush()
        return channel.id


def _confirmed_alert(factory: sessionmaker[Session], frames_dir: Path) -> int:
    """A limited-stage alert a ranger confirmed (queued for the channels); its frame on disk."""
    park = make_park(factory, stage=Stage.LIMITED, trial=(T0, T0 + timedelta(days=7)))
    write_jpeg(frames_dir / "1/cam.jpg", seed=1)
    frame = add_frame(factory, park.cameras[0], at(0), model_id=park.model_id, score=0.9, path="1/cam.jpg")
    assert process_new_flags(factory, at(1), max_age_s=None).alerts == 1
    submit_verdict(factory, frame, add_user(factory, "ana"), Verdict.CONFIRM, at(2))
    return frame


def _deliveries(factory: sessionmaker[Session], channel_id: int) -> list[AlertDelivery]:
    with factory() as session:
        return list(session.scalars(sa.select(AlertDelivery).where(AlertDelivery.channel_id == channel_id)))


def _count(channel: str, outcome: str) -> float:
    return REGISTRY.get_sample_value("bearwatch_alert_deliveries_total", {"channel": channel, "outcome": outcome}) or 0.0


POLICY = DeliveryPolicy(base_delay_s=1, max_delay_s=1, timeout_s=5)


def test_a_confirmed_alert_arrives_by_email_and_a_resend_keeps_its_message_id(
    factory: sessionmaker[Session], mail: MailServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="shadow")  # our logs; aiosmtpd logs AUTH data at DEBUG
    frames_dir = tmp_path / "frames"
    frame = _confirmed_alert(factory, frames_dir)
    channel = _channel(factory, "rangers-mail", ChannelKind.EMAIL, smtp_url(mail.port))
    mail.start()
    mail.lose_reply_next = 1  # kept by the server, but the sender hears 451: it sends again
    before = (_count("rangers-mail", "retry"), _count("rangers-mail", "delivered"))
    with httpx.Client(timeout=5) as client:
        send = http_sender(client, 5, frames_dir=frames_dir)
        assert deliver_due(factory, at(3), send, POLICY).retried == 1
        assert deliver_due(factory, at(10), send, POLICY).delivered == 1
    assert (_count("rangers-mail", "retry"), _count("rangers-mail", "delivered")) == (before[0] + 1, before[1] + 1)
    assert [d.status for d in _deliveries(factory, channel)] == [DeliveryStatus.DELIVERED]

    first, again = mail.messages
    assert first["Message-ID"] == again["Message-ID"] == message_id(f"flag:{_prediction_id(factory, frame)}",
                                                                     "bearwatch@park.example")
    assert mail.envelopes[1] == ("bearwatch@park.example", ["rangers@park.example", "ops@park.example"])
    assert again["Subject"] == "Bear alert: north / cam0 (limited)"
    assert again["To"] == "rangers@park.example, ops@park.example"
    body = again.get_body(("plain",))
    assert body is not None
    text = body.get_content()
    for fact in ("Site:      north", "Camera:    cam0", "Stage:     limited", "Score:     0.90",
                 f"Frame:     {frame} (1/cam.jpg)", f"The frame is attached (frame-{frame}.jpg)"):
        assert fact in text
    attachments = list(again.iter_attachments())
    assert [a.get_content_type() for a in attachments] == ["image/jpeg"]
    assert attachments[0].get_content() == (frames_dir / "1/cam.jpg").read_bytes()
    assert mail.auth_failures == 0
    assert PASSWORD not in caplog.text


def _prediction_id(factory: sessionmaker[Session], frame_id: int) -> int:
    from bearwatch.schema import Prediction

    with factory() as session:
        pid = session.scalar(sa.select(Prediction.id).where(Prediction.frame_id == frame_id))
    assert pid is not None
    return pid


def test_a_refusing_or_absent_mail_server_gets_the_alert_once_it_is_back(
    factory: sessionmaker[Session], mail: MailServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _confirmed_alert(factory, tmp_path / "frames")
    channel = _channel(factory, "rangers-mail", ChannelKind.EMAIL, smtp_url(mail.port))
    with httpx.Client(timeout=5) as client:
        send = http_sender(client, 5)
        # Down: connection refused, retried.
        assert deliver_due(factory, at(3), send, POLICY).retried == 1
        assert "ConnectionRefusedError" in (_deliveries(factory, channel)[0].last_error or "")
        # Up but refusing (451): retried.
        mail.start()
        mail.refuse_next = 1
        assert deliver_due(factory, at(10), send, POLICY).retried == 1
        assert "451 4.3.0 try again later" in (_deliveries(factory, channel)[0].last_error or "")
        # Back: delivered, once.
        assert deliver_due(factory, at(20), send, POLICY).delivered == 1
    assert len(mail.messages) == 1
    assert "The frame is not attached" in mail.messages[0].get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert PASSWORD not in caplog.text


def test_a_wrong_password_is_retried_and_never_shown(
    factory: sessionmaker[Session], mail: MailServer, tmp_path: Path, caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    caplog.set_level(logging.DEBUG, logger="shadow")  # our logs; aiosmtpd logs AUTH data at DEBUG
    _confirmed_alert(factory, tmp_path / "frames")
    channel = _channel(factory, "rangers-mail", ChannelKind.EMAIL, smtp_url(mail.port))
    mail.start()
    monkeypatch.setenv("SMTP_PASSWORD", "wrong-password-123")
    with httpx.Client(timeout=5) as client:
        assert deliver_due(factory, at(3), http_sender(client, 5), POLICY).retried == 1
    error = _deliveries(factory, channel)[0].last_error or ""
    assert "535" in error and mail.auth_failures >= 1  # smtplib tries PLAIN, then LOGIN
    assert "wrong-password-123" not in error + caplog.text
    monkeypatch.delenv("SMTP_PASSWORD")
    with httpx.Client(timeout=5) as client:
        assert deliver_due(factory, at(10), http_sender(client, 5), POLICY).retried == 1
    assert "environment variable SMTP_PASSWORD is not set" in (_deliveries(factory, channel)[0].last_error or "")


@pytest.mark.timeout(60)
@pytest.mark.parametrize("mode", ["silent", "trickle"])
def test_a_hung_mail_server_delays_no_webhook(
    factory: sessionmaker[Session], tmp_path: Path, mode: str
) -> None:
    hung = HungServer("silent" if mode == "silent" else "trickle")
    hook = Receiver(free_port())
    hook.start()
    try:
        _confirmed_alert(factory, tmp_path / "frames")
        stuck = _channel(factory, "stuck-mail", ChannelKind.EMAIL, smtp_url(hung.port))  # first: sorts first
        _channel(factory, "ops-hook", ChannelKind.WEBHOOK, hook.url)
        policy = DeliveryPolicy(timeout_s=3, pass_s=1)
        with httpx.Client(timeout=policy.timeout_s) as client:
            outbox = Outbox(http_sender(client, policy.timeout_s), policy)
            begun = time.monotonic()
            report = outbox.run(factory, at(3))
            assert time.monotonic() - begun < 2.5  # the pass waited for the webhook only
            assert report.delivered == 1 and report.in_flight == 1 and len(hook.bodies) == 1
            drained = outbox.drain(factory, at(4), timeout_s=15)
            waited = time.monotonic() - begun
            outbox.close()
        assert drained.retried == 1 and 2.5 < waited < 8  # cut at the 3 s deadline, not left hanging
        assert hung.accepted == 1
        assert "no complete answer from smtp server 127.0.0.1" in (_deliveries(factory, stuck)[0].last_error or "")
    finally:
        hook.stop()
        hung.stop()


def test_a_timed_out_mail_server_reads_the_same_when_the_deadline_timer_runs_late(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """On a busy machine smtplib's own socket timeout can end the exchange before the deadline's
    timer thread runs; ops must still read "no complete answer", not smtplib's wording. The late
    timer is simulated (its thread cannot be delayed on purpose here): it fires 30 s after the
    deadline, so only the socket timeout ends the exchange."""
    from contextlib import contextmanager

    import shadow.email_channel as email_channel

    real_cut_after = email_channel.cut_after

    @contextmanager
    def late_cutter(limit_s: float, find_socket=None):  # type: ignore[no-untyped-def]
        with real_cut_after(limit_s + 30, find_socket) as cutter:
            cutter.limit_s = limit_s
            yield cutter

    monkeypatch.setattr(email_channel, "cut_after", late_cutter)
    hung = HungServer("silent")
    payload = {"idempotency_key": "flag:1", "unconfirmed": False, "late": False, "alert_id": 1, "site": "north",
               "camera": "cam0", "frame_id": 1, "captured_at": at(0).isoformat(), "frame_path": "1.jpg",
               "score": 0.9, "stage": "expanded", "source": "model", "model_version_id": 1, "flag_count": 1,
               "created_at": at(0).isoformat()}
    try:
        with pytest.raises(email_channel.SmtpDeadlineExceeded, match=r"no complete answer from smtp server 127\.0\.0\.1"):
            email_channel.send_email(smtp_url(hung.port), payload, frames_dir=tmp_path, deadline_s=0.5)
    finally:
        hung.stop()


def test_slack_and_home_assistant_webhooks_get_their_documented_bodies(
    factory: sessionmaker[Session], tmp_path: Path
) -> None:
    slack, ha = Receiver(free_port()), Receiver(free_port())
    slack.start()
    ha.start()
    try:
        frame = _confirmed_alert(factory, tmp_path / "frames")
        _channel(factory, "slack", ChannelKind.WEBHOOK, slack.url, WebhookFormat.SLACK)
        _channel(factory, "home", ChannelKind.WEBHOOK, ha.url, WebhookFormat.HOMEASSISTANT)
        with factory.begin() as session:  # people read the site's clock; machines get ISO UTC
            session.execute(sa.update(Site).values(timezone="America/Denver"))
        with httpx.Client(timeout=5) as client:
            assert deliver_due(factory, at(3), http_sender(client, 5), POLICY).delivered == 2
    finally:
        slack.stop()
        ha.stop()
    key = f"flag:{_prediction_id(factory, frame)}"
    assert slack.keys == ha.keys == {key: 1}  # the Idempotency-Key header goes with every format
    assert slack.bodies == [{"text": "\n".join([
        "*Bear alert: north / cam0 (limited)*",
        "Site: north", "Camera: cam0", "Stage: limited", "Score: 0.90",
        f"Captured: {local_text(at(0), 'America/Denver', seconds=True)}", f"Frame: {frame} (1/cam.jpg)",
        "From: the model's flag", "Flags: 1", f"Alert: 1 (key {key})",
    ])}]
    assert ha.bodies == [{
        "site": "north", "camera": "cam0", "stage": "limited", "score": 0.9, "frame_id": frame,
        "time": at(0).isoformat(), "status": "alert", "unconfirmed": False, "late": False, "alert_id": 1,
        "idempotency_key": key, "title": "Bear alert: north / cam0 (limited)",
    }]


def test_unconfirmed_and_late_are_marked_in_every_format() -> None:
    payload = {"idempotency_key": "flag:7:unconfirmed", "unconfirmed": True, "late": True, "alert_id": 3, "site": "north",
               "camera": "<!channel>", "frame_id": 9, "captured_at": "2026-07-01T03:00:00+00:00", "frame_path": "9.jpg",
               "score": None, "stage": "limited", "source": "ranger", "model_version_id": None, "flag_count": 1,
               "created_at": "2026-07-01T05:00:00+00:00"}
    text = slack_body(payload)["text"]
    assert text.startswith("*[UNCONFIRMED] [LATE] Bear alert: north / &lt;!channel&gt; (limited)*\nUNCONFIRMED: ")
    assert "<!channel>" not in text and "Score: -" in text and "From: a ranger's sighting" in text
    ha = homeassistant_body(payload)
    assert (ha["status"], ha["unconfirmed"], ha["late"], ha["score"]) == ("unconfirmed", True, True, None)
    assert message_id("flag:7:unconfirmed", "a@park.example") != message_id("flag:7", "a@park.example")


def test_park_file_declares_email_and_webhook_formats(factory: sessionmaker[Session]) -> None:
    make_park(factory)
    text = f"""
alerts:
  channels:
    - name: rangers-mail
      kind: email
      url: {smtp_url(2525)}&starttls=1
    - name: slack
      kind: webhook
      format: slack
      url: https://hooks.slack.com/services/T0/B0/XYZ
"""
    config, problems = check_config_text(text)
    assert config is not None, problems
    with factory.begin() as session:
        apply_config(session, config, actor="test", now=at(0))
    with factory() as session:
        rows = {c.name: (c.kind, c.format) for c in session.scalars(sa.select(AlertChannel))}
    assert rows == {"rangers-mail": (ChannelKind.EMAIL, WebhookFormat.BEARWATCH),
                    "slack": (ChannelKind.WEBHOOK, WebhookFormat.SLACK)}
    assert shown_url(smtp_url(2525)) == f"smtp://{USER}:***@127.0.0.1:2525?from=bearwatch@park.example&to={TO}"


@pytest.mark.parametrize(("channel", "message"), [
    ("{name: m, kind: email}", "starts with smtp:// or smtps://"),
    ("{name: m, kind: email, url: 'smtp://h?to=a@b.example'}", "exactly one from=ADDRESS"),
    ("{name: m, kind: email, url: 'smtp://h?from=a@b.example'}", "needs to=ADDRESS"),
    ("{name: m, kind: email, url: 'smtp://h?from=a@b.example&to=x@y.example&cc=z@y.example'}", "unknown parameter(s) cc"),
    ("{name: m, kind: email, url: 'smtps://h?from=a@b.example&to=x@y.example&starttls=1'}", "smtps:// is TLS already"),
    ("{name: m, kind: email, url: 'smtp://u:hunter2@h?from=a@b.example&to=nobody'}", "'nobody' is not a plain e-mail address"),
    ("{name: m, kind: log, format: slack}", "format is for webhook channels"),
    ("{name: m, kind: webhook, url: 'https://h/x', format: teams}", "'bearwatch', 'slack' or 'homeassistant'"),
])
def test_email_channel_config_is_checked(channel: str, message: str) -> None:
    _, problems = check_config_text(f"alerts:\n  channels:\n    - {channel}\n")
    assert problems and message in str(problems[0]), problems
    assert "hunter2" not in str(problems)


DOCS = Path(__file__).resolve().parents[2] / "docs"


def _blocks(text: str, lang: str) -> list[str]:
    return [part.split("\n```", 1)[0] for part in text.split(f"```{lang}\n")[1:]]


def test_the_documented_bodies_are_what_the_formats_send() -> None:
    section = (DOCS / "operations.md").read_text(encoding="utf-8").split("## 15. Alert channels", 1)[1]
    bearwatch, slack, ha = (json.loads(b) for b in _blocks(section, "json"))
    assert webhook_body(WebhookFormat.BEARWATCH, bearwatch) == bearwatch
    assert webhook_body(WebhookFormat.SLACK, bearwatch) == slack
    assert webhook_body(WebhookFormat.HOMEASSISTANT, bearwatch) == ha
    assert message_id(bearwatch["idempotency_key"], "bearwatch@park.example") in section


def test_the_documented_channels_are_a_valid_park_file() -> None:
    section = (DOCS / "configuration.md").read_text(encoding="utf-8").split("### Alert channels", 1)[1]
    config, problems = check_config_text(_blocks(section, "yaml")[0])
    assert config is not None, problems
    assert [(c.kind.value, c.format.value) for c in config.alerts.channels] == [
        ("webhook", "bearwatch"), ("webhook", "slack"), ("webhook", "homeassistant"), ("email", "bearwatch")]
