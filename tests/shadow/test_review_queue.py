"""The review queue on SQLite and PostgreSQL: what reaches a ranger, in which order."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy.orm import Session, sessionmaker

from bearwatch.schema import Stage, Verdict
from shadow import alert_rules
from shadow.alerts import process_new_flags
from shadow.review_queue import QueueReason, review_queue
from shadow.verdicts import submit_verdict
from tests.shadow.helpers import T0, add_frame, add_user, at, make_park


def _queue(factory: sessionmaker[Session], *args, **kwargs):  # type: ignore[no-untyped-def]
    with factory() as session:
        return review_queue(session, *args, **kwargs)


def test_limited_queue_pending_alerts_first_then_flagged_then_audit(factory: sessionmaker[Session]) -> None:
    park = make_park(factory, stage=Stage.LIMITED, trial=(T0 + timedelta(minutes=10), T0 + timedelta(days=7)),
                     thresholds={"alert_cooldown_s": 0, "audit_rate": 0.25})
    ana = add_user(factory, "ana")
    before_trial = add_frame(factory, park.cameras[0], at(0), model_id=park.model_id, score=0.9)  # flagged, no alert
    held_late = add_frame(factory, park.cameras[0], at(1200), model_id=park.model_id, score=0.8)
    held_early = add_frame(factory, park.cameras[1], at(900), model_id=park.model_id, score=0.7)
    challenger_only = add_frame(factory, park.cameras[0], at(1300), model_id=park.model_id, score=0.1,
                                challenger_id=park.challenger_id, challenger_score=0.99)
    quiet = [add_frame(factory, park.cameras[i % 2], at(2000 + i), model_id=park.model_id, score=0.05) for i in range(40)]
    process_new_flags(factory, at(3000), max_age_s=None)

    queue = _queue(factory, ana, at(3600))
    reasons = [(i.frame_id, i.reason) for i in queue]
    assert reasons[:3] == [(held_early, QueueReason.PENDING_ALERT), (held_late, QueueReason.PENDING_ALERT),
                           (before_trial, QueueReason.FLAGGED)]
    audit = [i.frame_id for i in queue if i.reason is QueueReason.AUDIT]
    expected_audit = [f for f in [challenger_only, *quiet] if alert_rules.in_audit_sample(f, 0.25)]
    assert audit == expected_audit and 0 < len(audit) < 41  # the SQL sample is the Python one
    first = queue[0]
    assert (first.camera, first.site, first.stage, first.model_label) == ("cam1", "north", Stage.LIMITED, "bear")
    assert first.on_confirm.startswith("confirming sends the alert") and first.model_score == 0.7
    assert queue[2].on_confirm == "confirming sends a sighting alert"
    assert "missed" in next(i for i in queue if i.reason is QueueReason.AUDIT).on_confirm

    # What this ranger decided leaves their queue, not another ranger's.
    submit_verdict(factory, held_early, ana, Verdict.CONFIRM, at(3601))
    assert held_early not in [i.frame_id for i in _queue(factory, ana, at(3602))]
    ben = add_user(factory, "ben")
    bens = _queue(factory, ben, at(3602))
    mine = next(i for i in bens if i.frame_id == held_early)
    assert mine.reason is QueueReason.FLAGGED and "already went out" in mine.on_confirm


def test_window_and_limit(factory: sessionmaker[Session]) -> None:
    park = make_park(factory, stage=Stage.MANUAL, thresholds={"audit_rate": 0.0})
    ana = add_user(factory, "ana")
    old = add_frame(factory, park.cameras[0], at(0), model_id=park.model_id, score=0.9)
    recent = [add_frame(factory, park.cameras[0], at(86_400 + i), model_id=park.model_id, score=0.9) for i in range(5)]
    queue = _queue(factory, ana, at(90_000), window=timedelta(hours=2))
    assert [i.frame_id for i in queue] == recent[::-1] and old not in [i.frame_id for i in queue]  # newest first
    assert len(_queue(factory, ana, at(90_000), limit=2)) == 2
    assert _queue(factory, ana, at(90_000), site="nowhere") == []


def test_expanded_flagged_frames_say_the_alert_already_went(factory: sessionmaker[Session]) -> None:
    park = make_park(factory, stage=Stage.EXPANDED, thresholds={"audit_rate": 0.0})
    ana = add_user(factory, "ana")
    frame = add_frame(factory, park.cameras[0], at(0), model_id=park.model_id, score=0.9)
    # Before the processor ran, the queue says what will happen; after, what did.
    assert "already went out" in _queue(factory, ana, at(10))[0].on_confirm
    process_new_flags(factory, at(5), max_age_s=None)
    item = _queue(factory, ana, at(10))[0]
    assert (item.frame_id, item.reason) == (frame, QueueReason.FLAGGED) and "already went out" in item.on_confirm


def test_each_site_queues_its_own_cameras_frames(factory: sessionmaker[Session]) -> None:
    north = make_park(factory, stage=Stage.MANUAL, thresholds={"audit_rate": 1.0})
    south = make_park(factory, name="south", stage=Stage.MANUAL, cameras=1, thresholds={"audit_rate": 1.0})
    ana = add_user(factory, "ana")
    north_frames = {add_frame(factory, cam, at(60 * i), model_id=north.model_id, score=0.9 if i % 2 else 0.1)
                    for i, cam in enumerate(north.cameras * 2)}
    # south's frames scored by north's model too: they are still south's, reviewed with south's model
    south_frames = {add_frame(factory, south.cameras[0], at(30 + 60 * i), model_id=south.model_id, score=0.9 if i else 0.1,
                              challenger_id=north.model_id, challenger_score=0.9) for i in range(3)}
    queue = _queue(factory, ana, at(3600))
    assert {i.frame_id for i in queue if i.site == "north"} == north_frames
    assert {i.frame_id for i in queue if i.site == "south"} == south_frames
    assert {i.frame_id for i in _queue(factory, ana, at(3600), site="south")} == south_frames


def test_verdicts_against_the_model_get_a_second_ranger_and_disagreements_a_third(factory: sessionmaker[Session]) -> None:
    """A dismissed flag and a bear on an audited unflagged frame go to a second ranger
    first in their queue (not back to the first); when the two disagree a third ranger
    settles it by majority; agreement with the model needs no second look."""
    from shadow.backtest import stored_verdicts
    from shadow.truth import Truth, truth_of

    park = make_park(factory, stage=Stage.MANUAL, thresholds={"audit_rate": 1.0, "audit_near_rate": 1.0})
    ana, ben, cy = (add_user(factory, n) for n in ("ana", "ben", "cy"))
    dismissed = add_frame(factory, park.cameras[0], at(0), model_id=park.model_id, score=0.9)
    confirmed = add_frame(factory, park.cameras[0], at(600), model_id=park.model_id, score=0.9)
    missed = add_frame(factory, park.cameras[1], at(30), model_id=park.model_id, score=0.1)
    empty = add_frame(factory, park.cameras[1], at(60), model_id=park.model_id, score=0.1)
    for frame, verdict in ((dismissed, Verdict.DISMISS), (confirmed, Verdict.CONFIRM), (missed, Verdict.MISSED),
                           (empty, Verdict.DISMISS)):
        submit_verdict(factory, frame, ana, verdict, at(700))

    def second_looks(who):  # type: ignore[no-untyped-def]
        return [i.frame_id for i in _queue(factory, who, at(800)) if i.reason is QueueReason.SECOND_LOOK]

    bens = [i for i in _queue(factory, ben, at(800)) if i.reason is not QueueReason.FLAGGED]  # fresh flags lead
    assert [(i.frame_id, i.reason) for i in bens[:2]] == [(dismissed, QueueReason.SECOND_LOOK),
                                                          (missed, QueueReason.SECOND_LOOK)]
    assert [i.flagged for i in bens[:2]] == [True, False]
    assert second_looks(ana) == []  # never back to the ranger who gave the verdict
    submit_verdict(factory, dismissed, ben, Verdict.DISMISS, at(801))  # agrees: settled
    submit_verdict(factory, missed, ben, Verdict.DISMISS, at(802))  # disagrees: a third look
    assert second_looks(cy) == [missed]
    submit_verdict(factory, missed, cy, Verdict.MISSED, at(803))
    assert second_looks(cy) == [] and second_looks(add_user(factory, "dee")) == []
    with factory() as session:
        verdicts = stored_verdicts(session, [dismissed, missed])
    assert truth_of(verdicts[missed]) is Truth.BEAR  # two of three rangers saw the bear
    assert truth_of(verdicts[dismissed]) is Truth.NOT_BEAR


def test_live_bears_first_and_the_count_is_the_whole_queue(factory: sessionmaker[Session]) -> None:
    """A camera with fresh flags comes before day-old ones: held alerts, then flags of the
    last hour newest first, then older flags newest first, then the audit; the count is
    every frame waiting, not the page shown."""
    from shadow.review_queue import QueueSize, review_queue_and_size

    park = make_park(factory, stage=Stage.MANUAL, thresholds={"audit_rate": 1.0, "audit_near_rate": 1.0})
    ana = add_user(factory, "ana")
    day_old = [add_frame(factory, park.cameras[0], at(60 * i), model_id=park.model_id, score=0.9) for i in range(3)]
    fresh = [add_frame(factory, park.cameras[1], at(80_000 + 60 * i), model_id=park.model_id, score=0.85) for i in range(3)]
    quiet = [add_frame(factory, park.cameras[1], at(70_000 + i), model_id=park.model_id, score=0.05) for i in range(4)]
    now = at(80_000 + 600)
    queue = _queue(factory, ana, now, limit=5)
    assert [i.frame_id for i in queue] == [*reversed(fresh), day_old[2], day_old[1]]
    with factory() as session:
        assert review_queue_and_size(session, ana, now)[1] == QueueSize(10)
        assert review_queue_and_size(session, ana, now, site="nowhere")[1] == QueueSize(0)
    submit_verdict(factory, fresh[0], ana, Verdict.CONFIRM, now)
    with factory() as session:
        assert review_queue_and_size(session, ana, now)[1] == QueueSize(9)
    assert [i.frame_id for i in _queue(factory, ana, now)][-4:] == quiet, "the audit sample last, oldest first"
