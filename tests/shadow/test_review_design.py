"""The review design on SQLite and PostgreSQL: each verdict stores why its frame was before
the ranger, its audit stratum and inclusion probability; the review queue draws the
audit sample per stratum exactly as shadow.audit_design.in_audit does."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner

from bearwatch.park_file import Thresholds
from bearwatch.schema import Decision, Frame, FrameStatus, Prediction, ReviewReason, Role, Stage, Verdict, utcnow
from shadow import audit_design
from shadow.alerts import process_new_flags
from shadow.review_queue import QueueReason, review_queue
from shadow.verdicts import submit_verdict
from tests.shadow.helpers import T0, add_frame, add_user, at, make_park

MODEL_THRESHOLD = 0.5  # make_park's rollout model
DESIGN = {"audit_rate": 0.1, "audit_night_rate": 0.3, "audit_near_rate": 0.5, "audit_near_from": 0.5, "alert_cooldown_s": 0}


def _design(factory: sessionmaker[Session], frame_id: int) -> tuple[ReviewReason | None, str | None, float | None, bool]:
    with factory() as session:
        d = session.scalars(sa.select(Decision).where(Decision.frame_id == frame_id)).one()
        return d.review_reason, d.audit_stratum, d.inclusion_prob, d.design_derived


def _add_frames(factory: sessionmaker[Session], camera_id: int, model_id: int, rows: list[tuple[datetime, float, bool | None]]) -> list[int]:
    """Scored frames (captured_at, score, is_night) in one transaction."""
    with factory.begin() as session:
        frames = [Frame(camera_id=camera_id, captured_at=t, path=f"{camera_id}/{t:%H%M%S%f}.jpg", sha256="0" * 64, size_bytes=1,
                        width=64, height=48, status=FrameStatus.SCORED, is_night=night) for t, _, night in rows]
        session.add_all(frames)
        session.flush()
        session.add_all([Prediction(frame_id=f.id, model_version_id=model_id, probabilities={"bear": s, "not_bear": 1 - s},
                                    positive_score=s, flagged=s >= MODEL_THRESHOLD) for f, (_, s, _) in zip(frames, rows, strict=True)])
        return [f.id for f in frames]


def test_a_verdict_records_the_design_its_frame_came_through(factory: sessionmaker[Session]) -> None:
    park = make_park(factory, stage=Stage.LIMITED, trial=(T0, T0 + timedelta(days=7)), thresholds=DESIGN)
    t = Thresholds.model_validate(DESIGN)
    ana = add_user(factory, "ana")
    # A flag in manual-like scope (before the trial: no alert) and one that holds an alert.
    flagged = add_frame(factory, park.cameras[0], at(-600), model_id=park.model_id, score=0.9)
    held = add_frame(factory, park.cameras[1], at(60), model_id=park.model_id, score=0.8)
    process_new_flags(factory, at(100), max_age_s=None)
    submit_verdict(factory, flagged, ana, Verdict.CONFIRM, at(200))
    submit_verdict(factory, held, ana, Verdict.DISMISS, at(200))
    assert _design(factory, flagged) == (ReviewReason.FLAGGED, "flagged", 1.0, False)
    assert _design(factory, held) == (ReviewReason.HELD_ALERT, "flagged", 1.0, False)

    # Near the threshold (0.3 >= 0.5 x 0.5): the near stratum at 0.5, in the sample or not.
    near = _add_frames(factory, park.cameras[0], park.model_id, [(at(300 + i), 0.3, False) for i in range(12)])
    in_near = next(f for f in near if audit_design.in_audit(f, 0.3, False, MODEL_THRESHOLD, t))
    out_near = next(f for f in near if not audit_design.in_audit(f, 0.3, False, MODEL_THRESHOLD, t))
    submit_verdict(factory, in_near, ana, Verdict.DISMISS, at(400))
    submit_verdict(factory, out_near, ana, Verdict.MISSED, at(400))
    assert _design(factory, in_near) == (ReviewReason.AUDIT, "near", 0.5, False)
    assert _design(factory, out_near) == (ReviewReason.MISSED_REPORT, "near", 0.5, False)

    # Low scores: night at 0.3, day at 0.1; a bear reported outside the sample is a missed report.
    night = _add_frames(factory, park.cameras[1], park.model_id, [(at(500 + i), 0.05, True) for i in range(12)])
    in_night = next(f for f in night if audit_design.in_audit(f, 0.05, True, MODEL_THRESHOLD, t))
    submit_verdict(factory, in_night, ana, Verdict.MISSED, at(600))
    assert _design(factory, in_night) == (ReviewReason.AUDIT, "night", 0.3, False)
    day = _add_frames(factory, park.cameras[1], park.model_id, [(at(700 + i), 0.05, None) for i in range(12)])
    out_day = next(f for f in day if not audit_design.in_audit(f, 0.05, None, MODEL_THRESHOLD, t))
    submit_verdict(factory, out_day, ana, Verdict.MISSED, at(800))
    assert _design(factory, out_day) == (ReviewReason.MISSED_REPORT, "day", 0.1, False)

    # A bear on a frame the model never scored: reported outside the design, probability unknown.
    unscored = add_frame(factory, park.cameras[0], at(900))
    submit_verdict(factory, unscored, ana, Verdict.MISSED, at(950))
    assert _design(factory, unscored) == (ReviewReason.MISSED_REPORT, None, None, False)


def test_the_queue_draws_the_audit_per_stratum_as_the_design_says(factory: sessionmaker[Session]) -> None:
    park = make_park(factory, stage=Stage.MANUAL, thresholds=DESIGN)
    t = Thresholds.model_validate(DESIGN)
    ana = add_user(factory, "ana")
    # Three strata of unflagged frames, and flagged ones.
    rows: list[tuple[datetime, float, bool | None]] = []
    for i in range(900):
        kind = i % 3
        score = (0.26 + (i % 7) * 0.03) if kind == 0 else 0.02 + (i % 11) * 0.02
        rows.append((at(10 * i), score, kind == 2 if kind else (i % 2 == 0)))
    frames = _add_frames(factory, park.cameras[0], park.model_id, rows)
    flagged = _add_frames(factory, park.cameras[1], park.model_id, [(at(5 + 60 * i), 0.9, False) for i in range(5)])
    scored = dict(zip(frames, rows, strict=True))

    with factory() as session:
        queue = review_queue(session, ana, at(10 * 900), limit=2000)
    audit = [i for i in queue if i.reason is QueueReason.AUDIT]
    # Exactly the pure design's sample, in capture order.
    expected = [f for f in frames if audit_design.in_audit(f, scored[f][1], scored[f][2], MODEL_THRESHOLD, t)]
    assert [i.frame_id for i in audit] == expected
    for item in audit:
        _, score, night = scored[item.frame_id]
        stratum = audit_design.stratum_of(score, night, False, MODEL_THRESHOLD, t)
        assert (item.stratum, item.inclusion_prob) == (stratum.value, audit_design.stratum_rate(stratum, t))
    assert [(i.frame_id, i.stratum, i.inclusion_prob) for i in queue if i.reason is QueueReason.FLAGGED] == \
        [(f, "flagged", 1.0) for f in reversed(flagged)]  # newest first
    # Each stratum's share is about its rate (300 frames each).
    by_stratum: dict[str, list[int]] = {"near": [], "night": [], "day": []}
    for f in frames:
        by_stratum[audit_design.stratum_of(scored[f][1], scored[f][2], False, MODEL_THRESHOLD, t).value].append(f)
    chosen = {i.frame_id for i in audit}
    shares = {s: sum(f in chosen for f in fs) / len(fs) for s, fs in by_stratum.items()}
    assert all(len(fs) >= 250 for fs in by_stratum.values())
    assert abs(shares["near"] - 0.5) < 0.12 and abs(shares["night"] - 0.3) < 0.1 and abs(shares["day"] - 0.1) < 0.07, shares

    # What the queue said is what the verdict stores.
    for item in (next(i for i in audit if i.stratum == s) for s in ("near", "night", "day")):
        submit_verdict(factory, item.frame_id, ana, Verdict.DISMISS, at(10 * 900))
        assert _design(factory, item.frame_id) == (ReviewReason.AUDIT, item.stratum, item.inclusion_prob, False)


def test_a_zero_rate_stratum_is_left_out_and_the_others_still_drawn(factory: sessionmaker[Session]) -> None:
    thresholds: dict[str, Any] = {"audit_rate": 0.0, "audit_near_rate": 1.0, "audit_near_from": 0.5}
    park = make_park(factory, stage=Stage.MANUAL, thresholds=thresholds)
    ana = add_user(factory, "ana")
    low = _add_frames(factory, park.cameras[0], park.model_id, [(at(i), 0.1, i % 2 == 0) for i in range(20)])
    near = _add_frames(factory, park.cameras[0], park.model_id, [(at(100 + i), 0.4, False) for i in range(5)])
    with factory() as session:
        queue = review_queue(session, ana, at(200))
    assert [(i.frame_id, i.reason, i.stratum, i.inclusion_prob) for i in queue] == \
        [(f, QueueReason.AUDIT, "near", 1.0) for f in near]
    assert not set(low) & {i.frame_id for i in queue}


def test_review_command_names_the_audit_stratum(cli_db: sessionmaker[Session], monkeypatch: Any) -> None:
    from bearwatch import cli

    park = make_park(cli_db, thresholds={"audit_rate": 1.0, "audit_near_rate": 1.0})
    add_user(cli_db, "ana", Role.RANGER)
    now = utcnow()
    low, near = (_add_frames(cli_db, park.cameras[0], park.model_id, [(now - timedelta(minutes=m), s, False)])[0]
                 for m, s in ((10, 0.05), (5, 0.4)))
    out = CliRunner().invoke(cli.app, ["review", "--user", "ana"])
    assert out.exit_code == 0, out.output
    lines = {int(line.split()[1]): line for line in out.output.splitlines() if line.startswith("frame ")}
    assert " audit/day@100% " in lines[low] and " audit/near@100% " in lines[near]


def test_a_bear_the_audit_found_brings_its_neighbours_for_follow_up(factory: sessionmaker[Session]) -> None:
    """Adaptive cluster sampling: the frames within the cooldown of an audit-found miss come
    to a ranger as follow-up (and on from each bear among them), recorded as such."""
    design = {**DESIGN, "alert_cooldown_s": 120, "audit_near_rate": 0.0, "audit_night_rate": 0.1}
    park = make_park(factory, thresholds=design)
    t = Thresholds.model_validate(design)
    ana, bo = add_user(factory, "ana"), add_user(factory, "bo")
    ids = _add_frames(factory, park.cameras[0], park.model_id, [(at(60 * i), 0.05, False) for i in range(40)])
    anchor = next(f for f in ids[5:30] if audit_design.in_audit(f, 0.05, False, MODEL_THRESHOLD, t))
    i = ids.index(anchor)
    def queue_of(who: Any, now: datetime) -> list[Any]:
        with factory() as session:
            return review_queue(session, who, now, limit=200)

    assert not [q for q in queue_of(ana, at(3000)) if q.reason is QueueReason.FOLLOW_UP]
    submit_verdict(factory, anchor, ana, Verdict.MISSED, at(2500))
    queue = queue_of(bo, at(3000))
    follow = {q.frame_id for q in queue if q.reason is QueueReason.FOLLOW_UP}
    # Every undecided neighbour within 120 s (two frames each side), and nothing further.
    assert follow == {f for f in ids[i - 2:i + 3] if f != anchor} - {q.frame_id for q in queue if q.reason is QueueReason.AUDIT}
    nxt = ids[i + 2]
    submit_verdict(factory, nxt, bo, Verdict.MISSED, at(3100))  # the bear is still there: look further on
    assert _design(factory, nxt)[0] in (ReviewReason.FOLLOW_UP, ReviewReason.AUDIT)
    further = {q.frame_id for q in queue_of(bo, at(3200)) if q.reason is QueueReason.FOLLOW_UP}
    assert ids[i + 4] in further or audit_design.in_audit(ids[i + 4], 0.05, False, MODEL_THRESHOLD, t)
