"""Second looks from the vote summary (frame_votes, migration 0018), on SQLite and
PostgreSQL: the frames a ranger sees for a second look follow every verdict written,
changed or taken back, a frame's deletion and a new rollout model, whoever writes the
verdicts (submit_verdict, plain inserts, PostgreSQL's COPY); the migration sums the
verdicts already there; and on PostgreSQL the queue's work does not grow with the
window's settled verdicts."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import psycopg
import sqlalchemy as sa
from alembic import command
from sqlalchemy.orm import Session, sessionmaker

from bearwatch.auth import Actor
from bearwatch.db import make_engine, session_factory
from bearwatch.migrations import alembic_config
from bearwatch.schema import (
    FRAME_VOTES_LOOK_PREDICATE,
    Camera,
    Decision,
    Frame,
    FrameStatus,
    FrameVotes,
    ModelVersion,
    Prediction,
    Site,
    Stage,
    User,
    Verdict,
)
from shadow.alert_rules import HASH_MODULUS, HASH_MULTIPLIER, audit_threshold
from shadow.review_queue import QueueReason, review_queue
from shadow.second_looks import needs_another_look_sql
from shadow.sites import set_rollout_model
from shadow.truth import needs_another_look
from shadow.verdicts import submit_verdict, undo_last_verdict
from tests.shadow.helpers import Park, add_frame, add_prediction, add_user, at, make_park, queue_plan
from tests.statements import rows_read, statements_sent

NO_AUDIT: dict[str, object] = {"audit_rate": 0.0, "audit_near_rate": 0.0}  # only flags and second looks reach the queue
NOW = at(3600)


def _second_looks(factory: sessionmaker[Session], ranger: Actor, now: datetime = NOW) -> list[int]:
    with factory() as session:
        return [i.frame_id for i in review_queue(session, ranger, now, limit=500) if i.reason is QueueReason.SECOND_LOOK]


def _summed(factory: sessionmaker[Session]) -> dict[int, tuple[int, int, bool | None]]:
    with factory() as session:
        return {r.frame_id: (r.votes, r.bears, r.model_flag) for r in session.scalars(sa.select(FrameVotes))}


def _counted(factory: sessionmaker[Session]) -> dict[int, tuple[int, int, bool | None]]:
    """What the summary must say: every decided frame's verdicts counted now, with the
    flag of its site's rollout model."""
    with factory() as session:
        rows = session.execute(sa.text(
            "SELECT d.frame_id, count(*), sum(CASE WHEN d.verdict IN ('confirm', 'missed') THEN 1 ELSE 0 END), p.flagged"
            " FROM decisions d JOIN frames f ON f.id = d.frame_id JOIN cameras c ON c.id = f.camera_id"
            " JOIN sites s ON s.id = c.site_id"
            " LEFT JOIN predictions p ON p.frame_id = f.id AND p.model_version_id = s.rollout_model_id"
            " GROUP BY d.frame_id, p.flagged")).all()
    return {frame_id: (votes, bears, None if flagged is None else bool(flagged)) for frame_id, votes, bears, flagged in rows}


def test_the_sql_rules_are_shadow_truths_rule(factory: sessionmaker[Session]) -> None:
    """The queue's rule (over the joined flag) is needs_another_look; the summary's stored
    rule (over the flag it last saw) keeps every such frame, and a lone verdict whose flag
    it does not know."""
    types = {"votes": "INTEGER", "bears": "INTEGER", "model_flag": "BOOLEAN"}
    stored = re.sub(r"\b(votes|bears|model_flag)\b", lambda m: f"CAST(:{m[1]} AS {types[m[1]]})", FRAME_VOTES_LOOK_PREDICATE)
    with factory() as session:
        for votes in (1, 2, 3):
            verdicts = [(i, Verdict.DISMISS) for i in range(votes)]
            for bears in range(votes + 1):
                says = [(i, Verdict.MISSED) for i in range(bears)] + verdicts[bears:]
                for flagged in (True, False):
                    expected = needs_another_look(flagged, says)
                    queue_rule = needs_another_look_sql(sa.literal(votes), sa.literal(bears), sa.literal(flagged))
                    assert bool(session.scalar(sa.select(queue_rule))) is expected, (votes, bears, flagged)
                    kept = session.scalar(sa.text(f"SELECT {stored}"), {"votes": votes, "bears": bears, "model_flag": flagged})
                    assert bool(kept) is expected, (votes, bears, flagged)
                unknown = session.scalar(sa.text(f"SELECT {stored}"), {"votes": votes, "bears": bears, "model_flag": None})
                assert bool(unknown) is (votes == 1 or needs_another_look(True, says)), (votes, bears)


def test_a_verdict_taken_back_or_joined_moves_the_frame_in_and_out_of_second_looks(factory: sessionmaker[Session]) -> None:
    park = make_park(factory, stage=Stage.MANUAL, thresholds=NO_AUDIT)
    ana, ben, cy = (add_user(factory, n) for n in ("ana", "ben", "cy"))
    flag = add_frame(factory, park.cameras[0], at(0), model_id=park.model_id, score=0.9)
    quiet = add_frame(factory, park.cameras[1], at(10), model_id=park.model_id, score=0.1)
    assert _second_looks(factory, ana) == []

    submit_verdict(factory, flag, ben, Verdict.DISMISS, at(100))  # against the model
    assert _second_looks(factory, ana) == [flag]
    undo_last_verdict(factory, ben, at(110))  # taken back: an ordinary flag again
    assert _second_looks(factory, ana) == []
    submit_verdict(factory, flag, ben, Verdict.CONFIRM, at(120))  # agrees: settled
    assert _second_looks(factory, ana) == []
    submit_verdict(factory, flag, cy, Verdict.DISMISS, at(130))  # two who disagree: a third look
    assert _second_looks(factory, ana) == [flag]
    submit_verdict(factory, flag, ana, Verdict.CONFIRM, at(140))  # settled by majority
    assert _second_looks(factory, add_user(factory, "dee")) == []

    submit_verdict(factory, quiet, ben, Verdict.MISSED, at(150))  # a bear the model did not flag
    assert _second_looks(factory, ana) == [quiet]
    with factory.begin() as session:  # changed by hand, not through submit_verdict
        session.execute(sa.update(Decision).where(Decision.frame_id == quiet).values(verdict=Verdict.DISMISS))
    assert _second_looks(factory, ana) == []
    assert _summed(factory) == _counted(factory)


def test_a_new_rollout_model_decides_which_lone_verdicts_are_against_it(factory: sessionmaker[Session]) -> None:
    park = make_park(factory, stage=Stage.MANUAL, thresholds=NO_AUDIT)
    ana, ben = add_user(factory, "ana"), add_user(factory, "ben")
    # The first model flags one frame, the next model the other; ben sees no bear in either.
    old_flag = add_frame(factory, park.cameras[0], at(0), model_id=park.model_id, score=0.9,
                         challenger_id=park.challenger_id, challenger_score=0.1)
    new_flag = add_frame(factory, park.cameras[1], at(10), model_id=park.model_id, score=0.1,
                         challenger_id=park.challenger_id, challenger_score=0.9)
    for frame in (old_flag, new_flag):
        submit_verdict(factory, frame, ben, Verdict.DISMISS, at(100))
    assert _second_looks(factory, ana) == [old_flag]

    with factory.begin() as session:
        set_rollout_model(session, session.get_one(Site, park.site_id), session.get_one(ModelVersion, park.challenger_id),
                          actor="test", now=at(200))
    assert _second_looks(factory, ana) == [new_flag]
    assert _summed(factory) == _counted(factory)


def test_a_camera_moved_to_another_site_is_judged_by_that_sites_model(factory: sessionmaker[Session]) -> None:
    north = make_park(factory, name="north", stage=Stage.MANUAL, thresholds=NO_AUDIT)
    south = make_park(factory, name="south", stage=Stage.MANUAL, thresholds=NO_AUDIT)
    ana, ben = add_user(factory, "ana"), add_user(factory, "ben")
    frame = add_frame(factory, north.cameras[0], at(0), model_id=north.model_id, score=0.1)
    add_prediction(factory, frame, south.model_id, 0.9)  # south's model would flag it
    submit_verdict(factory, frame, ben, Verdict.DISMISS, at(100))  # agrees with north's model
    assert _second_looks(factory, ana) == []
    with factory.begin() as session:
        session.execute(sa.update(Camera).where(Camera.id == north.cameras[0]).values(site_id=south.site_id, name="moved"))
    assert _second_looks(factory, ana) == [frame]  # a dismissed flag of south's model
    assert _summed(factory) == _counted(factory)


def test_a_report_on_a_frame_not_yet_scored_is_a_second_look_once_the_model_passes_it(
    factory: sessionmaker[Session],
) -> None:
    park = make_park(factory, stage=Stage.MANUAL, thresholds=NO_AUDIT)
    ana, ben = add_user(factory, "ana"), add_user(factory, "ben")
    frame = add_frame(factory, park.cameras[0], at(0))  # no prediction yet
    submit_verdict(factory, frame, ben, Verdict.MISSED, at(100))
    assert _second_looks(factory, ana) == []  # not scored: not in the queue at all
    add_prediction(factory, frame, park.model_id, 0.2)  # scored later, not flagged
    assert _second_looks(factory, ana) == [frame]


def test_a_deleted_frame_or_verdict_leaves_no_summary_behind(factory: sessionmaker[Session]) -> None:
    park = make_park(factory, stage=Stage.MANUAL, thresholds=NO_AUDIT)
    ana, ben, cy = (add_user(factory, n) for n in ("ana", "ben", "cy"))
    gone = add_frame(factory, park.cameras[0], at(0), model_id=park.model_id, score=0.9)
    kept = add_frame(factory, park.cameras[0], at(10), model_id=park.model_id, score=0.9)
    submit_verdict(factory, gone, ben, Verdict.DISMISS, at(100))  # a lone dismiss of a flag
    for ranger in (ben, cy):  # (a confirm would make a sighting alert, which keeps its frame)
        submit_verdict(factory, kept, ranger, Verdict.DISMISS, at(100))  # two agree: settled
    assert _second_looks(factory, ana) == [gone]
    with factory.begin() as session:
        session.execute(sa.delete(Frame).where(Frame.id == gone))  # retention: its verdicts go with it
        session.execute(sa.delete(Decision).where(Decision.frame_id == kept, Decision.reviewer_id == _user_id(session, cy)))
    assert _second_looks(factory, ana) == [kept]  # ben's lone dismiss of a flag
    assert set(_summed(factory)) == {kept} and _summed(factory) == _counted(factory)


def _user_id(session: Session, actor: Actor) -> int:
    return session.scalars(sa.select(User.id).where(User.name == actor.name)).one()


# Frame ids whose hash keeps them out of the audit index (ix_frames_audit_captured_at), so
# that only the second looks read them.
_AUDIT_INDEX_BELOW = audit_threshold(0.10)


def _unaudited_ids(start: int) -> Iterator[int]:
    frame_id = start
    while True:
        if (frame_id * HASH_MULTIPLIER) % HASH_MODULUS >= _AUDIT_INDEX_BELOW:
            yield frame_id
        frame_id += 1


def _settled(factory: sessionmaker[Session], park: Park, reviewer_id: int, ids: Iterator[int], count: int,
             first: datetime) -> list[dict[str, Any]]:
    """``count`` unflagged frames in the window, each dismissed by ``reviewer_id`` (agreeing
    with the model: settled), written as bulk inserts; returns the decisions' rows."""
    frames, predictions, decisions = [], [], []
    for k in range(count):
        frame_id, captured = next(ids), first + timedelta(seconds=k)
        frames.append({"id": frame_id, "camera_id": park.cameras[k % 2], "captured_at": captured, "path": f"{frame_id}.jpg",
                       "sha256": "0" * 64, "size_bytes": 1, "width": 1, "height": 1, "status": FrameStatus.SCORED})
        predictions.append({"frame_id": frame_id, "model_version_id": park.model_id, "probabilities": {"bear": 0.05},
                            "positive_score": 0.05, "flagged": False, "scored_at": captured})
        decisions.append({"frame_id": frame_id, "reviewer_id": reviewer_id, "verdict": Verdict.DISMISS,
                          "decided_at": captured + timedelta(minutes=1)})
    with factory.begin() as session:
        session.execute(sa.insert(Frame), frames)
        session.execute(sa.insert(Prediction), predictions)
        session.execute(sa.insert(Decision), decisions)
    return decisions


def _queue_work(engine: sa.Engine, factory: sessionmaker[Session], ranger: Actor) -> tuple[list[int], int | None]:
    """The ranger's second looks, and on PostgreSQL the verdict rows the queue's statement reads."""
    with statements_sent(engine) as seen:
        looks = _second_looks(factory, ranger)
    if engine.dialect.name != "postgresql":
        return looks, None
    # the verdicts and their summaries read: the second looks, the follow-ups' anchors (the
    # window's found misses, through their partial index) and the frames this ranger decided
    return looks, rows_read(queue_plan(engine, seen), ("decisions", "frame_votes"))


SETTLED = 1000  # settled verdicts in the window, then ten times as many


def test_the_queue_reads_the_same_rows_with_ten_times_the_settled_verdicts(
    engine: sa.Engine, factory: sessionmaker[Session],
) -> None:
    park = make_park(factory, stage=Stage.MANUAL, thresholds=NO_AUDIT)
    ana, ben = add_user(factory, "ana"), add_user(factory, "ben")
    ids = _unaudited_ids(1000)
    looks = [add_frame(factory, park.cameras[0], at(60 * i), model_id=park.model_id, score=0.9) for i in range(3)]
    for frame in looks:
        submit_verdict(factory, frame, ben, Verdict.DISMISS, at(200))
    with factory() as session:
        ben_id = _user_id(session, ben)
    _settled(factory, park, ben_id, ids, SETTLED, at(300))
    if engine.dialect.name == "postgresql":
        with engine.begin() as conn:
            conn.exec_driver_sql("ANALYZE")
    before = _queue_work(engine, factory, ana)

    _settled(factory, park, ben_id, ids, 9 * SETTLED, at(300 + SETTLED))
    if engine.dialect.name == "postgresql":
        with engine.begin() as conn:
            conn.exec_driver_sql("ANALYZE")
    after = _queue_work(engine, factory, ana)

    assert before[0] == after[0] == looks
    assert after[1] == before[1], (before, after)  # PostgreSQL: not 10x; SQLite: None
    assert before[1] is None or before[1] < SETTLED / 10  # about the three frames, not the verdicts
    assert len(_summed(factory)) == 10 * SETTLED + 3 and _summed(factory) == _counted(factory)


def test_verdicts_copied_in_bulk_are_summed_in_one_go(engine: sa.Engine, factory: sessionmaker[Session]) -> None:
    """The season bench COPYs its verdicts (PostgreSQL: one statement-level trigger call for
    the whole COPY); elsewhere they are plain multi-row inserts."""
    park = make_park(factory, stage=Stage.MANUAL, thresholds=NO_AUDIT)
    ana, ben, cy = (add_user(factory, n) for n in ("ana", "ben", "cy"))
    flags = [add_frame(factory, park.cameras[0], at(60 * i), model_id=park.model_id, score=0.9) for i in range(4)]
    with factory() as session:
        ben_id, cy_id = _user_id(session, ben), _user_id(session, cy)
    rows = [(flags[0], ben_id, "dismiss"), (flags[1], ben_id, "confirm"), (flags[2], ben_id, "confirm"),
            (flags[2], cy_id, "dismiss"), (flags[3], ben_id, "dismiss"), (flags[3], cy_id, "dismiss")]
    if engine.dialect.name == "postgresql":
        url = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        with psycopg.connect(url) as conn:
            with conn.cursor().copy("COPY decisions (frame_id, reviewer_id, verdict, decided_at, design_derived) "
                                    "FROM STDIN") as copy:
                for frame_id, reviewer_id, verdict in rows:
                    copy.write_row((frame_id, reviewer_id, verdict, at(300).replace(tzinfo=None), False))
            conn.commit()
    else:
        with factory.begin() as session:
            session.execute(sa.insert(Decision), [{"frame_id": f, "reviewer_id": r, "verdict": Verdict(v),
                                                   "decided_at": at(300)} for f, r, v in rows])
    assert _second_looks(factory, ana) == [flags[0], flags[2]]  # a lone dismiss; a disagreement
    assert _summed(factory) == _counted(factory)


def test_the_migration_sums_the_verdicts_already_there_and_goes_back(database_url: str) -> None:
    config = alembic_config(database_url)
    command.upgrade(config, "0017")
    engine = make_engine(database_url)
    try:
        factory = session_factory(engine)
        park = make_park(factory, stage=Stage.MANUAL, thresholds=NO_AUDIT)
        ana, ben, cy = (add_user(factory, n) for n in ("ana", "ben", "cy"))
        dismissed = add_frame(factory, park.cameras[0], at(0), model_id=park.model_id, score=0.9)
        confirmed = add_frame(factory, park.cameras[0], at(10), model_id=park.model_id, score=0.9)
        disputed = add_frame(factory, park.cameras[1], at(20), model_id=park.model_id, score=0.1)
        for frame, ranger, verdict in ((dismissed, ben, Verdict.DISMISS), (confirmed, ben, Verdict.CONFIRM),
                                       (disputed, ben, Verdict.MISSED), (disputed, cy, Verdict.DISMISS)):
            submit_verdict(factory, frame, ranger, verdict, at(100))

        command.upgrade(config, "0018")
        assert _summed(factory) == {dismissed: (1, 0, True), confirmed: (1, 1, True), disputed: (2, 1, False)}
        assert _second_looks(factory, ana) == [dismissed, disputed]
        submit_verdict(factory, dismissed, cy, Verdict.DISMISS, at(200))  # the triggers are there
        assert _second_looks(factory, ana) == [disputed]

        command.downgrade(config, "0017")
        assert "frame_votes" not in sa.inspect(engine).get_table_names()
        submit_verdict(factory, confirmed, cy, Verdict.CONFIRM, at(300))  # no trigger left behind
        engine.dispose()
        command.upgrade(config, "head")
        assert _summed(factory) == _counted(factory) and len(_counted(factory)) == 3
    finally:
        engine.dispose()
