"""The flag pass at scale, on SQLite and PostgreSQL: a constant number of statements per
pass whatever the number of flags, the same alerts as the per-flag rules, a flag committed
out of id order still handled, and no re-reading of old, handled flags (issue 13)."""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from bearwatch.auth import Actor
from bearwatch.schema import (
    Alert,
    AlertDelivery,
    AlertFlag,
    AlertSource,
    AlertStatus,
    Camera,
    Decision,
    FlagOutcome,
    Frame,
    FrameStatus,
    Prediction,
    Site,
    Stage,
    User,
    Verdict,
)
from shadow.alerts import process_flag, process_new_flags
from shadow.flag_cursor import advance, open_cursor
from shadow.verdicts import submit_verdict
from tests.shadow.helpers import T0, Park, add_channel, add_frame, add_prediction, add_user, at, make_park
from tests.statements import Sent, statements_sent

COOLDOWN_S = 300
VISIT = 4  # flags per visit of an animal at a camera, 90 s apart: one alert each
VISIT_GAP_S = 1000  # between visits at a camera: more than the cooldown, so a new alert


# -- what the database holds, comparable across runs ---------------------------------------


def _state(session: Session) -> dict[str, Any]:
    alerts = list(session.scalars(sa.select(Alert)))
    key = {a.id: a.idempotency_key for a in alerts}
    return {
        "alerts": {a.idempotency_key: (a.frame_id, a.camera_id, a.stage, a.status, a.source, a.flag_count, a.last_flag_at,
                                       a.decision_id, a.last_error, a.created_at) for a in alerts},
        "flags": {f.prediction_id: (f.frame_id, f.site_id, f.stage, f.outcome, key.get(f.alert_id) if f.alert_id else None)
                  for f in session.scalars(sa.select(AlertFlag))},
        "deliveries": sorted((key[d.alert_id], d.channel_id, d.status.value, d.next_attempt_at)
                             for d in session.scalars(sa.select(AlertDelivery))),
    }


def _per_flag_reference(factory: sessionmaker[Session], now: datetime, max_age_s: float | None) -> dict[str, Any]:
    """What the per-flag rules (process_flag, one flag at a time in id order) make of the
    flags not yet handled; rolled back."""
    handled = sa.select(AlertFlag.id).where(AlertFlag.prediction_id == Prediction.id).exists()
    with factory() as session:
        rows = session.execute(
            sa.select(Prediction, Frame, Site).join(Frame, Frame.id == Prediction.frame_id)
            .join(Camera, Camera.id == Frame.camera_id)
            .join(Site, sa.and_(Site.id == Camera.site_id, Site.rollout_model_id == Prediction.model_version_id))
            .where(Prediction.flagged.is_(True), ~handled).order_by(Prediction.id)
        ).all()
        for prediction, frame, site in rows:
            process_flag(session, site, frame, prediction, now, max_age_s=max_age_s)
        state = _state(session)
        session.rollback()
    return state


def _committed_state(factory: sessionmaker[Session]) -> dict[str, Any]:
    with factory() as session:
        return _state(session)


# -- counting statements -----------------------------------------------------------------


def reads_of_new_flags(sent: list[Sent]) -> list[tuple[str, Any]]:
    """The pass's reads of flagged predictions (the batch query)."""
    return [(s.sql, s.parameters) for s in sent
            if s.sql.lstrip().upper().startswith("SELECT") and "alert_flags" in s.sql and "FROM predictions" in s.sql]


def recorded(factory: sessionmaker[Session]) -> AbstractContextManager[list[Sent]]:
    return statements_sent(factory.kw["bind"])


# -- a park with every stage ---------------------------------------------------------------


@dataclass(frozen=True)
class ThreeStages:
    expanded: Park
    limited: Park
    manual: Park
    ranger: Actor

    @property
    def cameras(self) -> list[tuple[Park, int]]:
        return [(p, c) for p in (self.expanded, self.limited, self.manual) for c in p.cameras]


def _three_stages(factory: sessionmaker[Session]) -> ThreeStages:
    cooldown = {"alert_cooldown_s": COOLDOWN_S}
    expanded = make_park(factory, name="north", stage=Stage.EXPANDED, cameras=3, thresholds=cooldown)
    limited = make_park(factory, name="lake", stage=Stage.LIMITED, cameras=2, thresholds=cooldown,
                        trial=(T0, T0 + timedelta(days=30)), scope={"cameras": []})
    with factory.begin() as session:  # the trial covers only the lake's first camera
        session.get_one(Site, limited.site_id).trial_scope = {"cameras": [limited.cameras[0]]}
    manual = make_park(factory, name="meadow", stage=Stage.MANUAL, cameras=2, thresholds=cooldown)
    add_channel(factory, "log")
    add_channel(factory, "north-only", sites=["north"])  # the lake has one channel, north two
    return ThreeStages(expanded, limited, manual, add_user(factory, "ana"))


def _seed_flags(factory: sessionmaker[Session], park: ThreeStages, start: datetime, n: int) -> list[int]:
    """``n`` flags from ``start`` on, round-robin over the cameras: at each camera visits of
    VISIT flags 90 s apart, VISIT_GAP_S between visits. Two frames in 50 got a ranger's
    verdict before their prediction arrived (a dismiss, a missed report). Returns the frames."""
    cams = park.cameras
    frames = []
    for i in range(n):
        site, camera = cams[i % len(cams)]
        k = i // len(cams)
        captured_at = start + timedelta(seconds=(k // VISIT) * VISIT_GAP_S + (k % VISIT) * 90 + i % len(cams))
        if i % 50 in (7, 23):
            frame = add_frame(factory, camera, captured_at)
            verdict = Verdict.DISMISS if i % 50 == 7 else Verdict.MISSED
            submit_verdict(factory, frame, park.ranger, verdict, captured_at + timedelta(seconds=5))
            add_prediction(factory, frame, site.model_id, 0.9)
        else:
            frame = add_frame(factory, camera, captured_at, model_id=site.model_id, score=0.9,
                              challenger_id=site.challenger_id, challenger_score=0.95)
        frames.append(frame)
    return frames


# Statements of one pass whatever its number of flags (one batch): the transaction, the
# lock, the cursor, the flags, their alerts, decisions and sightings, the channels, the
# bulk writes and the cursor's advance. Per flag, the per-flag rules took about 4.
PASS_STATEMENTS_MAX = 20


def test_a_pass_over_many_flags_takes_a_constant_number_of_statements(factory: sessionmaker[Session]) -> None:
    park = _three_stages(factory)
    process_new_flags(factory, at(0), max_age_s=None)  # the cursor exists from here on
    counts, reports = [], []
    for n, start, now in ((30, at(100), at(20_000)), (300, at(50_000), at(220_000))):
        _seed_flags(factory, park, start, n)
        expected = _per_flag_reference(factory, now, None)
        with recorded(factory) as record:
            reports.append(process_new_flags(factory, now, max_age_s=None))
        counts.append(len(record))
        assert _committed_state(factory) == expected  # the same alerts as the per-flag rules
    assert counts[0] == counts[1] <= PASS_STATEMENTS_MAX, counts

    # 300 flags over 7 cameras: 43 at each of the first 6 cameras, 42 at the last. North's
    # 3 cameras alert (queued), the lake's first holds its alerts: one alert per visit
    # (ten visits of 4 flags, one of 3), and at the lake one more where a ranger's early
    # dismiss suppressed the visit's alert, so its next flag alerted again.
    report = reports[1]
    assert (report.flags, report.alerts + report.merged, report.no_alert) == (300, 4 * 43, 300 - 4 * 43)
    with factory() as session:
        new_alerts = sa.select(Alert).where(Alert.source == AlertSource.MODEL, Alert.created_at == now)
        per_camera: dict[int, list[int]] = {}
        for alert in session.scalars(new_alerts.order_by(Alert.last_flag_at)):
            per_camera.setdefault(alert.camera_id, []).append(alert.flag_count)
    assert {c: per_camera[c] for c in park.expanded.cameras} == {c: [VISIT] * 10 + [3] for c in park.expanded.cameras}
    assert len(per_camera[park.limited.cameras[0]]) == 12 and sum(per_camera[park.limited.cameras[0]]) == 43
    assert set(per_camera) == {*park.expanded.cameras, park.limited.cameras[0]}


def test_a_pass_merges_into_alerts_of_earlier_passes_and_applies_early_verdicts(factory: sessionmaker[Session]) -> None:
    park = _three_stages(factory)
    held_camera, north_camera = park.limited.cameras[0], park.expanded.cameras[0]
    add_frame(factory, held_camera, at(0), model_id=park.limited.model_id, score=0.9)
    add_frame(factory, north_camera, at(0), model_id=park.expanded.model_id, score=0.9)
    assert process_new_flags(factory, at(10), max_age_s=None).alerts == 2
    with factory.begin() as session:
        held = session.scalars(sa.select(Alert).where(Alert.camera_id == held_camera)).one()
        held_id = held.id
        # Its escalation notice waits in the outbox (shadow.escalation); a release replaces it.
        session.add(AlertDelivery(alert_id=held_id, channel_id=1, next_attempt_at=at(50)))
        ana = session.scalars(sa.select(User.id).where(User.name == park.ranger.name)).one()
    # Within the cooldown: a confirm recorded before its frame's flag was handled releases
    # the held alert the flag joins; a dismiss of the next frame then changes nothing.
    confirmed = add_frame(factory, held_camera, at(60))
    with factory.begin() as session:
        session.add(Decision(frame_id=confirmed, reviewer_id=ana, verdict=Verdict.CONFIRM, decided_at=at(61)))
    add_prediction(factory, confirmed, park.limited.model_id, 0.9)
    dismissed = add_frame(factory, held_camera, at(90))
    submit_verdict(factory, dismissed, add_user(factory, "ben"), Verdict.DISMISS, at(91))
    add_prediction(factory, dismissed, park.limited.model_id, 0.9)
    # North's alert absorbs two more flags, the later one first.
    add_frame(factory, north_camera, at(120), model_id=park.expanded.model_id, score=0.9)
    add_frame(factory, north_camera, at(90), model_id=park.expanded.model_id, score=0.9)

    expected = _per_flag_reference(factory, at(200), None)
    report = process_new_flags(factory, at(200), max_age_s=None)
    assert (report.flags, report.merged, report.alerts) == (4, 4, 0)
    assert _committed_state(factory) == expected
    with factory() as session:
        alerts = {a.camera_id: a for a in session.scalars(sa.select(Alert).where(Alert.source == AlertSource.MODEL))}
        outbox = list(session.execute(sa.select(AlertDelivery.alert_id, AlertDelivery.next_attempt_at)))
    assert (alerts[north_camera].flag_count, alerts[north_camera].last_flag_at) == (3, at(120))
    assert (alerts[held_camera].status, alerts[held_camera].flag_count) == (AlertStatus.QUEUED, 3)
    assert [(a, t) for a, t in outbox if a == held_id] == [(held_id, at(200))]  # the notice replaced by the alert


def test_stale_and_out_of_scope_flags_in_one_pass(factory: sessionmaker[Session]) -> None:
    park = _three_stages(factory)
    now = at(10_000)
    old = add_frame(factory, park.expanded.cameras[0], now - timedelta(hours=2), model_id=park.expanded.model_id, score=0.9)
    fresh = add_frame(factory, park.expanded.cameras[0], now - timedelta(minutes=1), model_id=park.expanded.model_id, score=0.9)
    outside = add_frame(factory, park.limited.cameras[1], now - timedelta(minutes=1), model_id=park.limited.model_id, score=0.9)
    manual = add_frame(factory, park.manual.cameras[0], now - timedelta(minutes=1), model_id=park.manual.model_id, score=0.9)
    expected = _per_flag_reference(factory, now, 3600)
    report = process_new_flags(factory, now, max_age_s=3600)
    assert (report.stale, report.alerts, report.no_alert) == (1, 1, 2)
    assert _committed_state(factory) == expected
    with factory() as session:
        outcomes = dict(session.execute(sa.select(AlertFlag.frame_id, AlertFlag.outcome)).all())
    assert outcomes == {old: FlagOutcome.STALE, fresh: FlagOutcome.ALERT, outside: FlagOutcome.NO_ALERT,
                        manual: FlagOutcome.NO_ALERT}


# -- the cursor ------------------------------------------------------------------------------


def _add_prediction_with_id(factory: sessionmaker[Session], prediction_id: int, frame_id: int, model_id: int) -> None:
    with factory.begin() as session:
        session.add(Prediction(id=prediction_id, frame_id=frame_id, model_version_id=model_id,
                               probabilities={"bear": 0.9, "not_bear": 0.1}, positive_score=0.9, flagged=True))


def _alert_frames(factory: sessionmaker[Session]) -> list[int]:
    with factory() as session:
        return sorted(session.scalars(sa.select(Alert.frame_id)))


def test_a_flag_committed_below_handled_ids_is_still_handled(factory: sessionmaker[Session]) -> None:
    park = make_park(factory, stage=Stage.EXPANDED, thresholds={"alert_cooldown_s": 0})
    add_channel(factory, "log")
    early, late, later = (add_frame(factory, park.cameras[0], at(i)) for i in range(3))
    # Inference workers commit concurrently: ids 100 and 101 are committed, while the
    # transaction that drew id 50 is still open.
    _add_prediction_with_id(factory, 100, late, park.model_id)
    _add_prediction_with_id(factory, 101, later, park.model_id)
    assert process_new_flags(factory, at(10), max_age_s=None).alerts == 2
    assert process_new_flags(factory, at(60), max_age_s=None).flags == 0
    _add_prediction_with_id(factory, 50, early, park.model_id)  # commits now, below handled ids
    assert process_new_flags(factory, at(70), max_age_s=None).alerts == 1
    assert _alert_frames(factory) == [early, late, later]
    # And once settled, nothing is handled twice.
    for t in (200, 400, 600):
        assert process_new_flags(factory, at(t), max_age_s=None).flags == 0
    assert _alert_frames(factory) == [early, late, later]


def test_the_cursor_moves_only_past_settled_and_handled_ids(factory: sessionmaker[Session]) -> None:
    park = make_park(factory, stage=Stage.EXPANDED)
    frames = [add_frame(factory, park.cameras[0], at(i)) for i in range(3)]
    for prediction_id, frame in zip((10, 20, 30), frames, strict=True):
        _add_prediction_with_id(factory, prediction_id, frame, park.model_id)

    def step(now: datetime, unhandled_from: int | None = None) -> tuple[int, int | None]:
        with factory.begin() as session:
            cursor = open_cursor(session, "test", now)
            advance(session, cursor, now, settle_s=120, unhandled_from=unhandled_from)
            return cursor.position, cursor.candidate

    assert step(at(0)) == (0, 30)  # the highest flag is the candidate, not yet the position
    assert step(at(119)) == (0, 30)
    assert step(at(120), unhandled_from=20) == (19, 30)  # up to a flag left unhandled, never past it
    assert step(at(121)) == (30, None)  # settled and all handled: nothing newer to watch
    assert step(at(500)) == (30, None)


def _seed_handled_history(factory: sessionmaker[Session], park: Park, start: int, n: int) -> None:
    with factory.begin() as session:  # in one transaction: what matters is how many
        frames = [Frame(camera_id=park.cameras[i % 2], captured_at=at(start + i), path=f"{start + i}.jpg", sha256="0" * 64,
                        size_bytes=1000, width=64, height=48, status=FrameStatus.SCORED) for i in range(n)]
        session.add_all(frames)
        session.flush()
        session.add_all([Prediction(frame_id=f.id, model_version_id=park.model_id, probabilities={"bear": 0.9, "not_bear": 0.1},
                                    positive_score=0.9, flagged=True) for f in frames])
    process_new_flags(factory, at(start + n), max_age_s=None)
    process_new_flags(factory, at(start + n + 1000), max_age_s=None)  # the cursor settles past them


def _rows_read(factory: sessionmaker[Session], statement: str, parameters: Any) -> int:
    """Rows PostgreSQL's scans produced or filtered out running ``statement`` (EXPLAIN ANALYZE)."""
    def walk(plan: dict[str, Any]) -> int:
        own = plan.get("Actual Rows", 0) * plan.get("Actual Loops", 1) + plan.get("Rows Removed by Filter", 0)
        return (own if "Relation Name" in plan else 0) + sum(walk(p) for p in plan.get("Plans", []))

    with factory() as session:
        plan = session.connection().exec_driver_sql("EXPLAIN (ANALYZE, FORMAT JSON) " + statement, parameters).scalar()
    return walk(plan[0]["Plan"])


def test_a_pass_does_not_read_old_handled_flags(factory: sessionmaker[Session], database_url: str) -> None:
    park = make_park(factory, stage=Stage.EXPANDED, thresholds={"alert_cooldown_s": 0})
    reads: list[int] = []
    statements: list[int] = []
    postgresql = database_url.startswith("postgresql")
    for start, n in ((0, 200), (10_000, 1800)):  # then 10x the handled history
        _seed_handled_history(factory, park, start, n)
        if postgresql:  # the planner's statistics, as autovacuum keeps them
            with factory.begin() as session:
                session.execute(sa.text("ANALYZE"))
        with recorded(factory) as record:
            assert process_new_flags(factory, at(start + n + 2000), max_age_s=None).flags == 0
        statements.append(len(record))
        if postgresql:
            (statement, parameters), = reads_of_new_flags(record)
            reads.append(_rows_read(factory, statement, parameters))
    assert statements[0] == statements[1]
    if reads:  # rows PostgreSQL read: none of the handled flags (the per-flag pass read them all)
        assert max(reads) <= 2, reads
    # Flags below the cursor are never read again: were their markers gone, they would
    # still not alert twice.
    with factory.begin() as session:
        session.execute(sa.delete(AlertFlag))
        session.execute(sa.delete(Alert))
    assert process_new_flags(factory, at(20_000), max_age_s=None).flags == 0


def test_the_read_of_new_flags_uses_the_partial_index(factory: sessionmaker[Session]) -> None:
    park = make_park(factory, stage=Stage.EXPANDED)
    add_frame(factory, park.cameras[0], at(0), model_id=park.model_id, score=0.9)
    with recorded(factory) as record:
        process_new_flags(factory, at(100), max_age_s=None)
    (statement, parameters), = reads_of_new_flags(record)
    with factory() as session:
        conn = session.connection()
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql("SET enable_seqscan = off")  # a tiny table: ask whether the index is usable
            plan = "\n".join(r[0] for r in conn.exec_driver_sql("EXPLAIN " + statement, parameters))
        else:
            plan = "\n".join(str(r[-1]) for r in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters))
    assert "ix_predictions_flagged_id" in plan, plan
