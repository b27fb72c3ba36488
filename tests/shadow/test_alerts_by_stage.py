"""Alerts by stage, on SQLite and PostgreSQL: what model flags and verdicts send."""

from __future__ import annotations

import threading
from datetime import timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from bearwatch.schema import Alert, AlertDelivery, AlertFlag, AlertSource, AlertStatus, FlagOutcome, Stage, Verdict
from shadow.alerts import list_alerts, process_new_flags
from shadow.verdicts import submit_verdict
from tests.shadow.helpers import T0, add_channel, add_frame, add_prediction, add_user, at, make_park


def _alerts(factory: sessionmaker[Session]) -> list[Alert]:
    with factory() as session:
        return list(session.scalars(sa.select(Alert).order_by(Alert.id)))


def test_manual_sends_only_ranger_confirmed_sightings(factory: sessionmaker[Session]) -> None:
    park = make_park(factory, stage=Stage.MANUAL)
    add_channel(factory, "log")
    ranger = add_user(factory, "ana")
    flagged = [add_frame(factory, park.cameras[0], at(i * 1000), model_id=park.model_id, score=0.9) for i in range(3)]
    quiet = add_frame(factory, park.cameras[1], at(2500), model_id=park.model_id, score=0.1)
    report = process_new_flags(factory, at(5000), max_age_s=None)
    assert (report.flags, report.alerts, report.no_alert) == (3, 0, 3)
    assert _alerts(factory) == []  # the model's flags send nothing in manual

    submit_verdict(factory, flagged[2], ranger, Verdict.CONFIRM, at(5001))  # within the hour: a live sighting
    submit_verdict(factory, flagged[1], ranger, Verdict.DISMISS, at(5002))
    submit_verdict(factory, quiet, ranger, Verdict.MISSED, at(5003))
    alerts = _alerts(factory)
    assert [(a.frame_id, a.source, a.status) for a in alerts] == [
        (flagged[2], AlertSource.RANGER, AlertStatus.QUEUED),
        (quiet, AlertSource.RANGER, AlertStatus.QUEUED),
    ]
    with factory() as session:  # each queued alert is in the outbox of the log channel
        assert session.scalar(sa.select(sa.func.count()).select_from(AlertDelivery)) == 2


def test_limited_holds_every_alert_until_confirmed(factory: sessionmaker[Session]) -> None:
    park = make_park(factory, stage=Stage.LIMITED, trial=(T0, T0 + timedelta(days=7)),
                     thresholds={"alert_cooldown_s": 60})
    add_channel(factory, "log")
    ana = add_user(factory, "ana")
    frames = [add_frame(factory, park.cameras[0], at(i * 600), model_id=park.model_id, score=0.8) for i in range(4)]
    report = process_new_flags(factory, at(3000), max_age_s=None)
    assert report.alerts == 4
    assert {a.status for a in _alerts(factory)} == {AlertStatus.PENDING}
    with factory() as session:  # nothing is in the outbox while held
        assert session.scalar(sa.select(sa.func.count()).select_from(AlertDelivery)) == 0

    submit_verdict(factory, frames[0], ana, Verdict.CONFIRM, at(3001))
    submit_verdict(factory, frames[1], ana, Verdict.DISMISS, at(3002))
    statuses = [a.status for a in _alerts(factory)]
    assert statuses == [AlertStatus.QUEUED, AlertStatus.SUPPRESSED, AlertStatus.PENDING, AlertStatus.PENDING]
    # A second ranger's confirm of the dismissed frame sends it after all.
    ben = add_user(factory, "ben")
    result = submit_verdict(factory, frames[1], ben, Verdict.CONFIRM, at(3003))
    assert result.effect.value == "release"
    assert _alerts(factory)[1].status is AlertStatus.QUEUED


def test_limited_outside_scope_or_after_trial_behaves_as_manual(factory: sessionmaker[Session]) -> None:
    park = make_park(factory, stage=Stage.LIMITED, trial=(T0, T0 + timedelta(hours=2)), scope={"cameras": [], "hours": [12]})
    park_cams = park.cameras
    add_user(factory, "ana")
    inside = add_frame(factory, park_cams[0], T0 + timedelta(minutes=30), model_id=park.model_id, score=0.9)
    wrong_hour = add_frame(factory, park_cams[0], T0 + timedelta(hours=1, minutes=30), model_id=park.model_id, score=0.9)
    after = add_frame(factory, park_cams[1], T0 + timedelta(hours=12), model_id=park.model_id, score=0.9)
    process_new_flags(factory, T0 + timedelta(hours=13), max_age_s=None)
    with factory() as session:
        outcomes = dict(session.execute(sa.select(AlertFlag.frame_id, AlertFlag.outcome)).all())
    assert outcomes == {inside: FlagOutcome.ALERT, wrong_hour: FlagOutcome.NO_ALERT, after: FlagOutcome.NO_ALERT}
    assert [(a.frame_id, a.status) for a in _alerts(factory)] == [(inside, AlertStatus.PENDING)]


def test_expanded_queues_flags_at_once(factory: sessionmaker[Session]) -> None:
    park = make_park(factory, stage=Stage.EXPANDED, thresholds={"alert_cooldown_s": 0})
    add_channel(factory, "log")
    ana = add_user(factory, "ana")
    frame = add_frame(factory, park.cameras[0], at(0), model_id=park.model_id, score=0.7)
    process_new_flags(factory, at(1), max_age_s=None)
    assert [a.status for a in _alerts(factory)] == [AlertStatus.QUEUED]
    # A ranger's audit dismiss does not (cannot) recall it; it is recorded.
    assert submit_verdict(factory, frame, ana, Verdict.DISMISS, at(2)).effect.value == "none"
    assert [a.status for a in _alerts(factory)] == [AlertStatus.QUEUED]


def test_cooldown_merges_repeated_flags_of_one_animal(factory: sessionmaker[Session]) -> None:
    park = make_park(factory, stage=Stage.EXPANDED, thresholds={"alert_cooldown_s": 300})
    cam_a, cam_b = park.cameras
    # One bear at camera A for 10 minutes (a flag every 60 s), then back an hour later;
    # another at camera B at the same time.
    for i in range(11):
        add_frame(factory, cam_a, at(i * 60), model_id=park.model_id, score=0.9)
    add_frame(factory, cam_a, at(3600 + 900), model_id=park.model_id, score=0.9)
    add_frame(factory, cam_b, at(30), model_id=park.model_id, score=0.9)
    report = process_new_flags(factory, at(5000), max_age_s=None)
    assert (report.flags, report.alerts, report.merged) == (13, 3, 10)
    alerts = _alerts(factory)
    assert sorted((a.camera_id, a.flag_count) for a in alerts) == [(cam_a, 1), (cam_a, 11), (cam_b, 1)]


def test_challenger_flags_make_no_alert_and_processing_is_idempotent(factory: sessionmaker[Session]) -> None:
    park = make_park(factory, stage=Stage.EXPANDED, thresholds={"alert_cooldown_s": 0})
    add_frame(factory, park.cameras[0], at(0), model_id=park.model_id, score=0.1, challenger_id=park.challenger_id, challenger_score=0.99)
    assert process_new_flags(factory, at(1), max_age_s=None).flags == 0
    add_frame(factory, park.cameras[0], at(10), model_id=park.model_id, score=0.9)
    assert process_new_flags(factory, at(11), max_age_s=None).alerts == 1
    assert process_new_flags(factory, at(12), max_age_s=None).flags == 0  # run again: nothing new
    assert len(_alerts(factory)) == 1


def test_old_flags_are_marked_stale_not_alerted(factory: sessionmaker[Session]) -> None:
    park = make_park(factory, stage=Stage.EXPANDED)
    add_frame(factory, park.cameras[0], at(0), model_id=park.model_id, score=0.9)
    report = process_new_flags(factory, at(7200), max_age_s=3600)
    assert (report.stale, report.alerts) == (1, 0)


def test_concurrent_processors_make_each_alert_once(factory: sessionmaker[Session]) -> None:
    park = make_park(factory, stage=Stage.EXPANDED, thresholds={"alert_cooldown_s": 0}, cameras=4)
    for i in range(40):
        add_frame(factory, park.cameras[i % 4], at(i), model_id=park.model_id, score=0.9)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            process_new_flags(factory, at(100), batch_size=7, max_age_s=None)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    alerts = _alerts(factory)
    assert len(alerts) == 40 and len({a.frame_id for a in alerts}) == 40


def test_verdict_before_the_flag_is_processed_makes_one_alert(factory: sessionmaker[Session]) -> None:
    park = make_park(factory, stage=Stage.LIMITED, trial=(T0, T0 + timedelta(days=7)))
    ana = add_user(factory, "ana")
    frame = add_frame(factory, park.cameras[0], at(0), model_id=None)
    add_prediction(factory, frame, park.model_id, 0.95)
    submit_verdict(factory, frame, ana, Verdict.CONFIRM, at(1))  # before the processor ran
    process_new_flags(factory, at(2), max_age_s=None)
    alerts = _alerts(factory)
    assert [(a.source, a.status) for a in alerts] == [(AlertSource.MODEL, AlertStatus.QUEUED)]


def test_list_alerts_filters(factory: sessionmaker[Session]) -> None:
    park = make_park(factory, stage=Stage.LIMITED, trial=(T0, T0 + timedelta(days=7)), thresholds={"alert_cooldown_s": 0})
    ana = add_user(factory, "ana")
    frames = [add_frame(factory, park.cameras[0], at(i), model_id=park.model_id, score=0.9) for i in range(3)]
    process_new_flags(factory, at(10), max_age_s=None)
    submit_verdict(factory, frames[0], ana, Verdict.DISMISS, at(11))
    with factory() as session:
        assert len(list_alerts(session, site="north")) == 3
        assert [a.frame_id for a in list_alerts(session, statuses=[AlertStatus.SUPPRESSED])] == [frames[0]]
        assert list_alerts(session, site="elsewhere") == []
