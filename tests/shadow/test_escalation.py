"""Held alerts escalate (limited stage), on SQLite and PostgreSQL: a held alert nobody
decides within the site's held_escalation_s reaches the alert channels unverified,
recorded on the alert and counted; a later confirm still sends it, verified."""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa
from prometheus_client import REGISTRY
from sqlalchemy.orm import Session, sessionmaker

from bearwatch.schema import Alert, AlertStatus, Stage, Verdict
from shadow.alerts import process_new_flags
from shadow.delivery import Claimed, deliver_due
from shadow.escalation import escalate_held_alerts
from shadow.review_queue import QueueReason, review_queue
from shadow.verdicts import submit_verdict
from tests.shadow.helpers import T0, add_channel, add_frame, add_user, at, make_park


def _held_alert(factory: sessionmaker[Session], **thresholds: object) -> tuple[int, int]:
    park = make_park(factory, stage=Stage.LIMITED, trial=(T0, T0 + timedelta(days=7)),
                     thresholds={"alert_cooldown_s": 0, **thresholds})
    add_channel(factory, "pager")
    frame = add_frame(factory, park.cameras[0], at(0), model_id=park.model_id, score=0.9)
    process_new_flags(factory, at(5), max_age_s=None)  # the held alert, created at(5)
    return park.site_id, frame


def _alert(factory: sessionmaker[Session]) -> Alert:
    with factory() as session:
        return session.scalars(sa.select(Alert)).one()


def _sent(factory: sessionmaker[Session], now_s: float) -> list[dict[str, object]]:
    payloads: list[dict[str, object]] = []

    def send(item: Claimed) -> None:
        payloads.append(item.payload)

    deliver_due(factory, at(now_s), send=send)
    return payloads


def test_a_held_alert_nobody_decides_goes_out_unconfirmed_and_a_late_confirm_still_sends_it(
    factory: sessionmaker[Session],
) -> None:
    site_id, frame = _held_alert(factory)
    ana = add_user(factory, "ana")
    labels = {"site": str(site_id), "mode": "notify"}
    before = REGISTRY.get_sample_value("bearwatch_held_alert_escalations_total", labels) or 0.0
    with factory() as session:
        (item,) = review_queue(session, ana, at(300))
    assert item.reason is QueueReason.PENDING_ALERT and item.escalates_at == at(605), "the screen shows the time left"

    assert escalate_held_alerts(factory, at(604)) == 0 and _sent(factory, 604) == [], "not before its time"
    assert escalate_held_alerts(factory, at(606)) == 1
    assert escalate_held_alerts(factory, at(620)) == 0, "once"
    alert = _alert(factory)
    assert alert.status is AlertStatus.PENDING and alert.escalated_at == at(606), "still held for a ranger"
    (notice,) = _sent(factory, 607)
    assert notice["unconfirmed"] is True and str(notice["idempotency_key"]).endswith(":unconfirmed")
    assert _alert(factory).status is AlertStatus.PENDING, "delivering the notice does not settle the alert"
    assert REGISTRY.get_sample_value("bearwatch_held_alert_escalations_total", labels) == before + 1
    with factory() as session:
        (item,) = review_queue(session, ana, at(700))
    assert item.escalated_at == at(606) and item.escalates_at is None

    submit_verdict(factory, frame, ana, Verdict.CONFIRM, at(900))  # the ranger is back
    (confirmed,) = _sent(factory, 901)
    assert confirmed["unconfirmed"] is False and confirmed["idempotency_key"] == str(notice["idempotency_key"]).removesuffix(":unconfirmed")
    assert _alert(factory).status is AlertStatus.SENT


def test_a_site_may_send_the_held_alert_itself_unverified_or_never_escalate(factory: sessionmaker[Session]) -> None:
    _held_alert(factory, held_escalation="send", held_escalation_s=60)
    assert escalate_held_alerts(factory, at(66)) == 1
    assert _alert(factory).status is AlertStatus.QUEUED
    (sent,) = _sent(factory, 67)
    assert sent["unconfirmed"] is True and not str(sent["idempotency_key"]).endswith(":unconfirmed")
    assert _alert(factory).status is AlertStatus.SENT


def test_a_dismissed_alert_does_not_escalate(factory: sessionmaker[Session]) -> None:
    _, frame = _held_alert(factory)
    submit_verdict(factory, frame, add_user(factory, "ana"), Verdict.DISMISS, at(60))
    assert escalate_held_alerts(factory, at(86_400)) == 0 and _sent(factory, 86_400) == []


def test_held_escalation_zero_never_escalates(factory: sessionmaker[Session]) -> None:
    _held_alert(factory, held_escalation_s=0)
    assert escalate_held_alerts(factory, at(86_400)) == 0 and _sent(factory, 86_400) == []


def test_a_dismiss_after_the_escalation_can_be_undone(factory: sessionmaker[Session]) -> None:
    from shadow.verdicts import undo_last_verdict

    _, frame = _held_alert(factory)
    escalate_held_alerts(factory, at(606))
    assert len(_sent(factory, 607)) == 1
    ana = add_user(factory, "ana")
    submit_verdict(factory, frame, ana, Verdict.DISMISS, at(700))
    assert "held again" in undo_last_verdict(factory, ana, at(710)).reverted, "the dismiss sent nothing"
    assert _alert(factory).status is AlertStatus.PENDING
    assert escalate_held_alerts(factory, at(2000)) == 0, "escalated once already"
