"""Ranger verdicts on SQLite and PostgreSQL: one per frame and ranger, idempotent repeats,
clear refusals, concurrent rangers, undo."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from bearwatch.auth import Actor
from bearwatch.errors import AlreadyDecided, InvalidVerdict, NotFound, UndoRefused
from bearwatch.schema import Alert, AlertDelivery, AlertStatus, Decision, Role, Stage, Verdict
from shadow.alerts import process_new_flags
from shadow.verdicts import submit_verdict, undo_last_verdict
from tests.shadow.helpers import T0, add_channel, add_frame, add_user, at, make_park


def _decisions(factory: sessionmaker[Session]) -> list[tuple[int, int, Verdict]]:
    with factory() as session:
        return [tuple(r) for r in session.execute(sa.select(Decision.frame_id, Decision.reviewer_id, Decision.verdict).order_by(Decision.id))]


def _alerts(factory: sessionmaker[Session]) -> list[Alert]:
    with factory() as session:
        return list(session.scalars(sa.select(Alert).order_by(Alert.id)))


def test_same_verdict_twice_is_a_no_op_a_different_one_is_refused(factory: sessionmaker[Session]) -> None:
    park = make_park(factory)
    ana = add_user(factory, "ana")
    frame = add_frame(factory, park.cameras[0], at(0), model_id=park.model_id, score=0.9)
    first = submit_verdict(factory, frame, ana, Verdict.CONFIRM, at(1), note="big one")
    again = submit_verdict(factory, frame, ana, Verdict.CONFIRM, at(2))
    assert first.recorded and not again.recorded and again.decision_id == first.decision_id
    assert again.alert_id == first.alert_id
    with pytest.raises(AlreadyDecided, match=r"ana already marked frame \d+ 'confirm'.*undo"):
        submit_verdict(factory, frame, ana, Verdict.DISMISS, at(3))
    assert len(_decisions(factory)) == 1 and len(_alerts(factory)) == 1


def test_a_second_ranger_may_review_the_same_frame(factory: sessionmaker[Session]) -> None:
    park = make_park(factory)
    ana, ben = add_user(factory, "ana"), add_user(factory, "ben")
    frame = add_frame(factory, park.cameras[0], at(0), model_id=park.model_id, score=0.9)
    submit_verdict(factory, frame, ana, Verdict.CONFIRM, at(1))
    submit_verdict(factory, frame, ben, Verdict.DISMISS, at(2))
    assert [d[2] for d in _decisions(factory)] == [Verdict.CONFIRM, Verdict.DISMISS]
    assert len(_alerts(factory)) == 1  # one sighting alert, not one per ranger


def test_verdicts_that_do_not_fit_the_frame_are_refused(factory: sessionmaker[Session]) -> None:
    park = make_park(factory)
    ana = add_user(factory, "ana")
    flagged = add_frame(factory, park.cameras[0], at(0), model_id=park.model_id, score=0.9)
    quiet = add_frame(factory, park.cameras[0], at(5), model_id=park.model_id, score=0.2,
                      challenger_id=park.challenger_id, challenger_score=0.99)  # only the challenger flagged it
    with pytest.raises(InvalidVerdict, match="'confirm' it"):
        submit_verdict(factory, flagged, ana, Verdict.MISSED, at(1))
    with pytest.raises(InvalidVerdict, match="not flagged"):
        submit_verdict(factory, quiet, ana, Verdict.CONFIRM, at(1))
    with pytest.raises(NotFound, match="no frame with id 999999"):
        submit_verdict(factory, 999_999, ana, Verdict.DISMISS, at(1))
    with pytest.raises(NotFound, match="no user named 'ghost'"):
        submit_verdict(factory, flagged, Actor("ghost", Role.RANGER), Verdict.CONFIRM, at(1))
    assert _decisions(factory) == []


@pytest.mark.timeout(120)
def test_two_rangers_submitting_at_once_leave_one_verdict_each(factory: sessionmaker[Session]) -> None:
    park = make_park(factory, stage=Stage.LIMITED, trial=(T0, T0 + timedelta(days=7)), thresholds={"alert_cooldown_s": 0})
    add_channel(factory, "log")
    rangers = [add_user(factory, "ana"), add_user(factory, "ben")]
    frames = [add_frame(factory, park.cameras[0], at(i), model_id=park.model_id, score=0.9) for i in range(6)]
    process_new_flags(factory, at(10), max_age_s=None)
    barrier = threading.Barrier(4)
    outcomes: list[str] = []
    lock = threading.Lock()

    def review(actor: Actor, verdict: Verdict) -> None:
        barrier.wait()
        for frame in frames:
            try:
                result = submit_verdict(factory, frame, actor, verdict, at(20))
                out = "recorded" if result.recorded else "repeat"
            except AlreadyDecided:
                out = "refused"
            with lock:
                outcomes.append(out)

    # Each ranger twice at once: the same verdict from two windows, or a changed mind.
    threads = [threading.Thread(target=review, args=args) for args in
               [(rangers[0], Verdict.CONFIRM), (rangers[0], Verdict.CONFIRM), (rangers[1], Verdict.DISMISS), (rangers[1], Verdict.CONFIRM)]]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    decisions = _decisions(factory)
    assert len(decisions) == 12 and len({(f, r) for f, r, _ in decisions}) == 12
    assert outcomes.count("recorded") == 12 and outcomes.count("repeat") == 6 and outcomes.count("refused") == 6
    # Every frame had at least ana's confirm: every held alert went out, each once.
    alerts = _alerts(factory)
    assert len(alerts) == 6 and {a.status for a in alerts} == {AlertStatus.QUEUED}
    with factory() as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(AlertDelivery)) == 6


def test_undo_reverts_what_the_verdict_did(factory: sessionmaker[Session]) -> None:
    park = make_park(factory, stage=Stage.LIMITED, trial=(T0, T0 + timedelta(days=7)), thresholds={"alert_cooldown_s": 0})
    add_channel(factory, "log")
    ana = add_user(factory, "ana")
    held, quiet = (add_frame(factory, park.cameras[0], at(0), model_id=park.model_id, score=0.9),
                   add_frame(factory, park.cameras[0], at(1), model_id=park.model_id, score=0.1))
    process_new_flags(factory, at(2), max_age_s=None)
    submit_verdict(factory, held, ana, Verdict.CONFIRM, at(10))
    assert _alerts(factory)[0].status is AlertStatus.QUEUED
    result = undo_last_verdict(factory, ana, at(20))
    assert result.frame_id == held and "held again" in result.reverted
    assert _alerts(factory)[0].status is AlertStatus.PENDING and _decisions(factory) == []
    with factory() as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(AlertDelivery)) == 0
    # A missed report's sighting is withdrawn by undo.
    submit_verdict(factory, quiet, ana, Verdict.MISSED, at(30))
    assert len(_alerts(factory)) == 2
    assert "withdrawn" in undo_last_verdict(factory, ana, at(31)).reverted
    assert len(_alerts(factory)) == 1
    # After the window the verdict stays.
    submit_verdict(factory, held, ana, Verdict.DISMISS, at(40))
    with pytest.raises(UndoRefused, match="older than 60 s"):
        undo_last_verdict(factory, ana, at(101))
    assert _alerts(factory)[0].status is AlertStatus.SUPPRESSED


def test_undo_is_refused_once_the_alert_started_going_out(factory: sessionmaker[Session]) -> None:
    from shadow.delivery import deliver_due

    park = make_park(factory)
    add_channel(factory, "log")
    ana, ben = add_user(factory, "ana"), add_user(factory, "ben")
    frame = add_frame(factory, park.cameras[0], at(0), model_id=park.model_id, score=0.9)
    submit_verdict(factory, frame, ana, Verdict.CONFIRM, at(1))
    deliver_due(factory, at(2), send=lambda item: None)
    assert _alerts(factory)[0].status is AlertStatus.SENT
    with pytest.raises(UndoRefused, match="cannot be unsent"):
        undo_last_verdict(factory, ana, at(3))
    assert len(_decisions(factory)) == 1
    with pytest.raises(UndoRefused, match="ben has no verdict"):
        undo_last_verdict(factory, ben, at(3))


def test_undo_keeps_another_rangers_verdict_in_force(factory: sessionmaker[Session]) -> None:
    park = make_park(factory, stage=Stage.LIMITED, trial=(T0, T0 + timedelta(days=7)))
    ana, ben = add_user(factory, "ana"), add_user(factory, "ben")
    frame = add_frame(factory, park.cameras[0], at(0), model_id=park.model_id, score=0.9)
    process_new_flags(factory, at(1), max_age_s=None)
    submit_verdict(factory, frame, ben, Verdict.DISMISS, at(2))
    submit_verdict(factory, frame, ana, Verdict.CONFIRM, at(3))  # no channel: queued, not attempted
    assert _alerts(factory)[0].status is AlertStatus.QUEUED
    undo_last_verdict(factory, ana, at(4))
    assert _alerts(factory)[0].status is AlertStatus.SUPPRESSED  # ben's dismiss stands


def test_verdicts_are_counted_in_metrics(factory: sessionmaker[Session]) -> None:
    from prometheus_client import REGISTRY

    park = make_park(factory, name="metrics-site")
    ana = add_user(factory, "ana")
    frame = add_frame(factory, park.cameras[0], at(0), model_id=park.model_id, score=0.9)
    labels = {"site": str(park.site_id), "verdict": "confirm"}
    before = REGISTRY.get_sample_value("bearwatch_verdicts_total", labels) or 0.0
    submit_verdict(factory, frame, ana, Verdict.CONFIRM, at(1))
    submit_verdict(factory, frame, ana, Verdict.CONFIRM, at(2))  # a repeat is not a new verdict
    assert REGISTRY.get_sample_value("bearwatch_verdicts_total", labels) == before + 1


def test_a_dismiss_of_an_old_unprocessed_flag_sends_nothing(factory: sessionmaker[Session]) -> None:
    """Expanded: a flag first seen by a ranger's verdict hours later is stale, not alerted."""
    park = make_park(factory, stage=Stage.EXPANDED)
    ana = add_user(factory, "ana")
    old = add_frame(factory, park.cameras[0], at(0), model_id=park.model_id, score=0.9)
    fresh = add_frame(factory, park.cameras[1], at(7190), model_id=park.model_id, score=0.9)
    submit_verdict(factory, old, ana, Verdict.DISMISS, at(7200))
    assert _alerts(factory) == []
    submit_verdict(factory, fresh, ana, Verdict.DISMISS, at(7201))  # expanded: a fresh flag went out at once
    assert [(a.frame_id, a.status) for a in _alerts(factory)] == [(fresh, AlertStatus.QUEUED)]


def test_a_verdict_on_a_stale_frame_records_it_and_sends_no_live_alert(factory: sessionmaker[Session]) -> None:
    """Confirming a frame captured hours ago used to send a sighting alert at once; a held
    alert confirmed after its frame went stale used to go out as if the bear were there."""
    from shadow.alert_rules import FLAG_MAX_AGE_S, Effect
    from shadow.review_queue import review_queue

    park = make_park(factory, stage=Stage.LIMITED, trial=(T0, T0 + timedelta(days=7)),
                     thresholds={"alert_cooldown_s": 0, "audit_rate": 1.0, "audit_near_rate": 1.0})
    add_channel(factory, "log")
    ana = add_user(factory, "ana")
    flag = add_frame(factory, park.cameras[0], at(0), model_id=park.model_id, score=0.9)  # held in the trial
    quiet = add_frame(factory, park.cameras[1], at(10), model_id=park.model_id, score=0.1)
    process_new_flags(factory, at(20), max_age_s=None)
    late = at(FLAG_MAX_AGE_S + 600)
    with factory() as session:
        texts = {i.frame_id: i.on_confirm for i in review_queue(session, ana, late)}
    assert texts[flag] == "captured 1 h 10 min ago: your verdict is recorded, no live alert goes out", texts
    assert "no live alert" in texts[quiet], "the page says it before the key is pressed"

    confirmed = submit_verdict(factory, flag, ana, Verdict.CONFIRM, late)
    missed = submit_verdict(factory, quiet, ana, Verdict.MISSED, late)
    assert (confirmed.effect, missed.effect) == (Effect.LATE, Effect.LATE)
    assert [(a.frame_id, a.status) for a in _alerts(factory)] == [(flag, AlertStatus.EXPIRED)], "no sighting alert"
    assert len(_decisions(factory)) == 2, "both verdicts are evidence"
    with factory() as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(AlertDelivery)) == 0
    undo_last_verdict(factory, ana, late + timedelta(seconds=1))  # the missed report
    assert "held again" in undo_last_verdict(factory, ana, late + timedelta(seconds=2)).reverted
    assert _alerts(factory)[0].status is AlertStatus.PENDING


def test_a_site_may_send_late_verdicts_marked_late(factory: sessionmaker[Session]) -> None:
    from shadow.alert_rules import FLAG_MAX_AGE_S, Effect
    from shadow.review_queue import review_queue

    park = make_park(factory, thresholds={"late_alerts": "marked"})
    add_channel(factory, "log")
    ana = add_user(factory, "ana")
    frame = add_frame(factory, park.cameras[0], at(0), model_id=park.model_id, score=0.9)
    late = at(FLAG_MAX_AGE_S * 20)
    with factory() as session:
        (item,) = review_queue(session, ana, late, window=timedelta(days=2))
    assert item.on_confirm == "captured 20 h 0 min ago: confirming sends a sighting alert, marked late"
    assert submit_verdict(factory, frame, ana, Verdict.CONFIRM, late).effect is Effect.SIGHTING
    assert [a.status for a in _alerts(factory)] == [AlertStatus.QUEUED]
