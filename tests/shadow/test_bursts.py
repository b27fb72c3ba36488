"""Dismissing a burst (shadow.bursts) on SQLite and PostgreSQL: a branch flagged 20 times
in 10 minutes at one camera is dismissed in one action, one verdict row per frame, in the
same few statements as a burst of 3; a held alert (limited) is suppressed as one dismiss
would, and undo holds it again; frames another ranger judged, a flag that arrived after
the ranger saw the count, other cameras and frames outside the window are untouched."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from bearwatch.auth import Actor
from bearwatch.errors import NotFound, UndoRefused
from bearwatch.schema import (
    Alert,
    AlertStatus,
    Decision,
    Frame,
    FrameStatus,
    ModelVersion,
    Prediction,
    ReviewReason,
    Role,
    Stage,
    Verdict,
    utcnow,
)
from bearwatch.users import add_user
from ingest.cameras import add_camera
from shadow.alerts import process_new_flags
from shadow.bursts import dismiss_burst, find_burst, undo_burst
from shadow.rollout import record_stage_change
from shadow.sites import add_site, get_site, set_rollout_model
from shadow.verdicts import submit_verdict
from tests.statements import sql_sent

ANN, BOB = Actor("ann", Role.RANGER), Actor("bob", Role.RANGER)


@dataclass
class Park:
    branch: list[int]  # flagged frames of camera 'branch', oldest first, 30 s apart
    late: int  # a flag of 'branch' 15 minutes after the burst
    quiet: int  # an unflagged frame of 'branch' inside the burst
    other_camera: int  # a flag at the same time at another camera


def _park(factory: sessionmaker[Session], now: datetime, flags: int, stage: Stage) -> Park:
    with factory.begin() as session:
        for actor in (ANN, BOB):
            add_user(session, actor.name, actor.role, "correct horse battery")
        model = ModelVersion(name="m", path="/m.pkl", sha256="cd" * 32, classes=["bear", "empty"], positive_classes=["bear"])
        session.add(model)
        session.flush()
        site = add_site(session, "north", actor="test")
        set_rollout_model(session, site, model, actor="test", now=now - timedelta(days=1))
        if stage is Stage.LIMITED:
            record_stage_change(session, site, Stage.LIMITED, actor="test", reason="trial", now=now - timedelta(hours=2),
                                trial=(now - timedelta(hours=2), now + timedelta(days=7)))
        branch = add_camera(session, site, "branch", "/f/branch.avi", interval_s=5)
        creek = add_camera(session, site, "creek", "/f/creek.avi", interval_s=5)
        start = now - timedelta(minutes=25)

        def frame(camera_id: int, at: datetime, score: float) -> int:
            f = Frame(camera_id=camera_id, captured_at=at, path=f"{camera_id}/{at:%H%M%S}.jpg", sha256="0" * 64,
                      size_bytes=1, width=160, height=120, status=FrameStatus.SCORED)
            session.add(f)
            session.flush()
            session.add(Prediction(frame_id=f.id, model_version_id=model.id, positive_score=score, flagged=score >= 0.5,
                                   probabilities={"bear": score, "empty": 1 - score}))
            return f.id

        ids = [frame(branch.id, start + timedelta(seconds=30 * i), 0.8) for i in range(flags)]
        quiet = frame(branch.id, start + timedelta(seconds=15), 0.1)
        other = frame(creek.id, start + timedelta(seconds=30), 0.9)
        late = frame(branch.id, start + timedelta(seconds=30 * flags + 15 * 60), 0.9)
    process_new_flags(factory, now)
    return Park(ids, late, quiet, other)


def _work(statements: list[str]) -> int:
    """Statements that read or write rows (not BEGIN, SET, PRAGMA, nor PostgreSQL's alerts lock)."""
    return sum(1 for s in statements
               if s.split()[0].upper() in {"SELECT", "INSERT", "UPDATE", "DELETE", "WITH"} and "pg_advisory" not in s)


def _verdicts(factory: sessionmaker[Session]) -> list[tuple[int, str, Verdict]]:
    with factory() as session:
        return [(f, n, v) for f, n, v in session.execute(
            sa.text("SELECT d.frame_id, u.name, d.verdict FROM decisions d JOIN users u ON u.id = d.reviewer_id ORDER BY d.frame_id")
        ).all()]


def _model_alerts(factory: sessionmaker[Session]) -> list[tuple[int, AlertStatus, int | None]]:
    with factory() as session:
        return [tuple(r) for r in session.execute(sa.select(Alert.id, Alert.status, Alert.decision_id).order_by(Alert.id))]  # type: ignore[misc]


def test_a_burst_of_20_flags_is_dismissed_in_one_action_one_row_per_frame(factory: sessionmaker[Session]) -> None:
    now = utcnow()
    park = _park(factory, now, 20, Stage.LIMITED)
    held = _model_alerts(factory)
    assert [s for _, s, _ in held] == [AlertStatus.PENDING, AlertStatus.PENDING, AlertStatus.PENDING], \
        "the branch's flags joined one held alert; creek's and the late flag have their own"

    # Another ranger already judged one frame of the burst: it stays for a verdict of its own.
    submit_verdict(factory, park.branch[3], BOB, Verdict.CONFIRM, now)
    with factory() as session:
        burst = find_burst(session, park.branch[-1])
    expected = [f for f in park.branch if f != park.branch[3]]
    assert list(burst.frame_ids) == expected and burst.others == 18
    assert park.late not in burst.frame_ids and park.quiet not in burst.frame_ids and park.other_camera not in burst.frame_ids

    # bob's confirm released the held alert; dismisses then change no alert (as one by one).
    engine = factory.kw["bind"]
    with sql_sent(engine) as statements:
        result = dismiss_burst(factory, park.branch[-1], burst.frame_ids, ANN, now)
    assert list(result.dismissed) == expected and result.skipped == () and result.suppressed_alerts == ()
    ann = [(f, v) for f, n, v in _verdicts(factory) if n == "ann"]
    assert ann == [(f, Verdict.DISMISS) for f in expected], "one dismiss row per frame"
    assert _work(statements) == 3, statements  # two reads, one insert


def test_a_held_alert_is_suppressed_as_one_dismiss_would_and_undo_holds_it_again(factory: sessionmaker[Session]) -> None:
    now = utcnow()
    park = _park(factory, now, 6, Stage.LIMITED)
    with factory() as session:
        burst = find_burst(session, park.branch[0])
        branch_alert = session.scalar(sa.select(Alert.id).where(Alert.frame_id == park.branch[0]))
    assert list(burst.frame_ids) == park.branch

    # A flag that arrives after the ranger saw the count is not dismissed silently.
    with factory.begin() as session:
        extra = Frame(camera_id=burst.camera_id, captured_at=burst.last_at + timedelta(seconds=10),  # type: ignore[operator]
                      path="x.jpg", sha256="1" * 64, size_bytes=1, width=1, height=1, status=FrameStatus.SCORED)
        session.add(extra)
        session.flush()
        model_id = get_site(session, "north").rollout_model_id
        session.add(Prediction(frame_id=extra.id, model_version_id=model_id, positive_score=0.9, flagged=True,
                               probabilities={"bear": 0.9, "empty": 0.1}))
        extra_id = extra.id
    process_new_flags(factory, now)

    result = dismiss_burst(factory, park.branch[0], burst.frame_ids, ANN, now)
    assert list(result.dismissed) == park.branch and result.suppressed_alerts == (branch_alert,)
    with factory() as session:
        alert = session.get(Alert, branch_alert)
        assert alert is not None and alert.status is AlertStatus.SUPPRESSED
        first = session.scalar(sa.select(Decision).where(Decision.frame_id == park.branch[0]))
        assert first is not None and alert.decision_id == first.id
        assert first.review_reason is ReviewReason.HELD_ALERT and first.inclusion_prob == 1.0
        later = session.scalar(sa.select(Decision).where(Decision.frame_id == park.branch[1]))
        assert later is not None and later.review_reason is ReviewReason.FLAGGED, "as one by one: the alert was suppressed by then"
        assert session.scalar(sa.select(sa.func.count()).select_from(Decision).where(Decision.frame_id == extra_id)) == 0
    with factory() as session:
        assert list(find_burst(session, extra_id).frame_ids) == [extra_id], "the new flag is still open"

    # Again with the same ids: nothing is open any more, nothing changes.
    again = dismiss_burst(factory, park.branch[0], burst.frame_ids, ANN, now)
    assert again.dismissed == () and list(again.skipped) == park.branch

    assert undo_burst(factory, ANN, result, now + timedelta(seconds=5)) == len(park.branch)
    assert [(f, n) for f, n, _ in _verdicts(factory)] == []
    with factory() as session:
        alert = session.get(Alert, branch_alert)
        assert alert is not None and alert.status is AlertStatus.PENDING and alert.decision_id is None
    with pytest.raises(UndoRefused):
        undo_burst(factory, ANN, result, now + timedelta(seconds=5))
    with pytest.raises(UndoRefused, match="older than"):
        undo_burst(factory, ANN, result, now + timedelta(minutes=5))


def test_the_same_few_statements_for_3_and_for_37_flags(factory: sessionmaker[Session]) -> None:
    now = utcnow()
    park = _park(factory, now, 40, Stage.LIMITED)
    engine = factory.kw["bind"]
    counts = []
    for frames in (park.branch[:3], park.branch[3:]):  # 3 flags, then 37
        with factory() as session:
            burst = find_burst(session, frames[0], window=timedelta(hours=1))
        ids = [f for f in burst.frame_ids if f in frames]
        with sql_sent(engine) as statements:
            result = dismiss_burst(factory, frames[0], ids, ANN, now, window=timedelta(hours=1))
        assert list(result.dismissed) == frames
        counts.append(_work(statements))
    # Two reads (the ranger, frame and site; the open flags), one insert of every verdict and,
    # for the first (it suppresses the held alert), one update.
    assert counts == [4, 3], counts
    assert len(_verdicts(factory)) == 40


def test_manual_and_expanded_record_the_dismisses_and_change_no_alert(factory: sessionmaker[Session]) -> None:
    now = utcnow()
    park = _park(factory, now, 5, Stage.MANUAL)
    assert _model_alerts(factory) == [], "manual: a flag makes no alert"
    with factory() as session:
        burst = find_burst(session, park.branch[2])
    result = dismiss_burst(factory, park.branch[2], burst.frame_ids, ANN, now)
    assert list(result.dismissed) == park.branch and result.suppressed_alerts == ()
    assert _model_alerts(factory) == []
    assert [v for _, _, v in _verdicts(factory)] == [Verdict.DISMISS] * 5


def test_an_unregistered_user_is_refused_and_nothing_is_written(factory: sessionmaker[Session]) -> None:
    now = utcnow()
    park = _park(factory, now, 4, Stage.LIMITED)
    with factory() as session:
        burst = find_burst(session, park.branch[0])
    with pytest.raises(NotFound, match="no user named 'zed'"):
        dismiss_burst(factory, park.branch[0], burst.frame_ids, Actor("zed", Role.RANGER), now)
    with pytest.raises(NotFound, match="no user named 'zed'"):  # as a single verdict is
        submit_verdict(factory, park.branch[0], Actor("zed", Role.RANGER), Verdict.DISMISS, now)
    assert _verdicts(factory) == []
    assert {s for _, s, _ in _model_alerts(factory)} == {AlertStatus.PENDING}
    with pytest.raises(NotFound, match="no frame"):
        dismiss_burst(factory, 999_999, [999_999], ANN, now)
