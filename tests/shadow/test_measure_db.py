"""Agreement and alert-rate queries on hand-made rows whose counts are known
(SQLite and PostgreSQL): windows, other models, disputes, dark frames, the trial scope."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy.orm import Session, sessionmaker

from bearwatch.schema import (
    Alert,
    AlertStatus,
    Camera,
    CameraHealth,
    Decision,
    Frame,
    FrameStatus,
    ModelVersion,
    Prediction,
    Role,
    Site,
    Stage,
    StageChange,
    User,
    Verdict,
)
from shadow.agreement import reviewed_frames, reviewed_frames_by_pair, site_agreement
from shadow.alert_rates import alert_rate_comparison, current_exposure, daily_alert_rates, trial_scope_of
from shadow.episodes import episode_band, episode_gap_s
from shadow.periods import latest_manual_period, thresholds_of
from shadow.sites import set_rollout_model

T0 = datetime(2026, 3, 2, 10, 0, tzinfo=timezone.utc)


class Rows:
    def __init__(self, session: Session) -> None:
        self.s = session
        self.models = [ModelVersion(name=f"m{i}", path="/nonexistent", sha256=f"{i}" * 64, classes=["bear", "empty"],
                                    positive_classes=["bear"]) for i in range(2)]
        session.add_all(self.models)
        session.flush()
        self.site = Site(name="north", stage=Stage.MANUAL, stage_since=T0, rollout_model_id=self.models[0].id, thresholds={})
        session.add(self.site)
        session.flush()
        session.add(StageChange(site_id=self.site.id, from_stage=None, to_stage=Stage.MANUAL, actor="t", reason="t", changed_at=T0))
        self.cams = [Camera(site_id=self.site.id, name=f"c{i}", source="x", health=CameraHealth.ONLINE) for i in range(2)]
        self.users = [User(name=f"r{i}", role=Role.RANGER) for i in range(2)]
        session.add_all(self.cams + self.users)
        session.flush()

    def frame(self, cam: int, minutes: float, *, model: int | None = 0, flagged: bool = False,
              verdicts: tuple[Verdict, ...] = (), brightness: float = 100.0, contrast: float = 30.0) -> Frame:
        at = T0 + timedelta(minutes=minutes)
        f = Frame(camera_id=self.cams[cam].id, captured_at=at, path=f"{cam}/{minutes}.jpg", sha256="0" * 64, size_bytes=1,
                  width=32, height=24, brightness=brightness, contrast=contrast, sharpness=10.0, is_night=False,
                  status=FrameStatus.SCORED)
        self.s.add(f)
        self.s.flush()
        if model is not None:
            self.s.add(Prediction(frame_id=f.id, model_version_id=self.models[model].id, probabilities={},
                                  positive_score=0.9 if flagged else 0.1, flagged=flagged))
        for i, v in enumerate(verdicts):
            self.s.add(Decision(frame_id=f.id, reviewer_id=self.users[i].id, verdict=v, decided_at=at + timedelta(seconds=i + 1)))
        self.s.flush()
        return f


C, D, M = Verdict.CONFIRM, Verdict.DISMISS, Verdict.MISSED


def test_site_agreement_counts_the_right_frames(factory: sessionmaker[Session]) -> None:
    with factory.begin() as session:
        r = Rows(session)
        r.frame(0, 0, flagged=True, verdicts=(C,))  # tp
        r.frame(0, 10, flagged=True, verdicts=(C, C))  # tp, two rangers agree
        r.frame(1, 20, flagged=True, verdicts=(D,))  # fp
        r.frame(1, 30, flagged=False, verdicts=(M,))  # fn
        r.frame(1, 40, flagged=False, verdicts=(D, D))  # tn
        r.frame(0, 50, flagged=True, verdicts=(C, D))  # disputed
        r.frame(0, 60, flagged=True)  # not reviewed: not counted
        r.frame(0, 70, model=1, flagged=True, verdicts=(C,))  # only the other model scored it
        r.frame(0, 60 * 30, flagged=True, verdicts=(D,))  # outside the window
        report = site_agreement(session, r.site, T0, T0 + timedelta(hours=24))
        assert report is not None
        c = report.confusion
        assert (c.tp, c.fp, c.fn, c.tn, c.disputed) == (2, 1, 1, 1, 1)
        assert [m.captured_at for m in report.misses] == [T0 + timedelta(minutes=30)]
        assert report.kappa_frames == 3  # frames with two reviewers
        other = site_agreement(session, r.site, T0, T0 + timedelta(hours=24), model_version_id=r.models[1].id)
        assert other is not None and (other.confusion.tp, other.confusion.reviewed) == (1, 1)


def test_all_pairs_in_one_query_match_the_per_site_query(factory: sessionmaker[Session]) -> None:
    # The Models page reads every (site, model) pair at once (reviewed_frames_by_pair);
    # it must give each pair exactly what the per-site reviewed_frames gives.
    with factory.begin() as session:
        r = Rows(session)
        r.frame(0, 0, flagged=True, verdicts=(C,))
        r.frame(0, 10, flagged=True, verdicts=(C, D))
        r.frame(1, 30, flagged=False, verdicts=(M,))
        r.frame(0, 60, flagged=True)  # not reviewed
        r.frame(0, 70, model=1, flagged=True, verdicts=(C,))
        r.frame(1, 80, model=None, verdicts=(D,))  # reviewed, no prediction: no pair
        r.frame(0, 60 * 30, flagged=True, verdicts=(D,))  # outside the window
        other = Site(name="south", stage=Stage.MANUAL, stage_since=T0, rollout_model_id=r.models[1].id, thresholds={})
        session.add(other)
        session.flush()
        cam = Camera(site_id=other.id, name="s0", source="x", health=CameraHealth.ONLINE)
        session.add(cam)
        session.flush()
        r.cams.append(cam)
        r.frame(2, 5, model=1, flagged=False, verdicts=(D, D))
        start, end = T0, T0 + timedelta(hours=24)
        by_pair = reviewed_frames_by_pair(session, start, end)
        m0, m1 = r.models[0].id, r.models[1].id
        assert set(by_pair) == {(r.site.id, m0), (r.site.id, m1), (other.id, m1)}
        for site in (r.site, other):
            for model_id in (m0, m1):
                assert by_pair.get((site.id, model_id), []) == reviewed_frames(session, site, model_id, start, end)
        assert [len(f.verdicts) for f in by_pair[(r.site.id, m0)]] == [1, 2, 1]


def test_baseline_and_current_rates_with_dark_frames_and_the_trial_scope(factory: sessionmaker[Session]) -> None:
    with factory.begin() as session:
        r = Rows(session)
        # Manual period, 10:00-14:00: camera 0 in 3 hours, camera 1 in 1 hour (+ one black hour that must not count).
        for m in (0, 60, 120):
            r.frame(0, m)
        r.frame(1, 5)
        r.frame(1, 200, brightness=1.0, contrast=0.2)  # black frame: no camera-hour
        r.frame(0, 1, verdicts=(C,))  # sighting 1 on camera 0
        r.frame(0, 3, verdicts=(C,))  # 2 min later: the same sighting (cooldown 300 s)
        r.frame(0, 61, verdicts=(M,))  # sighting 2
        r.frame(1, 6, verdicts=(C, D))  # disputed: not a sighting
        promoted = T0 + timedelta(hours=4)
        r.site.stage, r.site.stage_since = Stage.LIMITED, promoted
        r.site.trial_scope = {"cameras": [r.cams[0].id]}
        session.add(StageChange(site_id=r.site.id, from_stage=Stage.MANUAL, to_stage=Stage.LIMITED, actor="t", reason="t",
                                changed_at=promoted))
        # Limited, 14:00-16:00: camera 0 in 2 hours with 4 alerts; camera 1 (out of scope) with 3 alerts.
        # Alerts 20 min apart: separate episodes, as this busy baseline's episode gap is 9-12 min (shadow.episodes).
        for cam, minutes, n in ((0, 240, 2), (0, 300, 2), (1, 240, 3)):
            for k in range(n):
                f = r.frame(cam, minutes + 20 * k)
                session.add(Alert(site_id=r.site.id, camera_id=r.cams[cam].id, frame_id=f.id, stage=Stage.LIMITED,
                                  status=AlertStatus.PENDING, idempotency_key=f"{cam}-{minutes}-{k}", created_at=f.captured_at))
        session.flush()
        now = T0 + timedelta(hours=6)
        assert latest_manual_period(session, r.site, now).end == promoted  # type: ignore[union-attr]
        scope = trial_scope_of(r.site)
        assert scope.cameras == frozenset({r.cams[0].id})
        cmp = alert_rate_comparison(session, r.site, now, thresholds_of(r.site))
        assert cmp is not None
        current = current_exposure(session, r.site, promoted, now, cmp.baseline.gap_s, scope)
        assert (current.events, current.hours) == (4, 2.0)
        # Baseline on camera 0 only: 2 sightings in 3 camera-hours; current 4 alerts in 2 camera-hours -> ratio 3.
        assert (cmp.baseline.events, cmp.baseline.hours) == (2, 3.0)
        assert cmp.test.ratio == pytest.approx(3.0)
        r.site.trial_scope = {}
        everything = alert_rate_comparison(session, r.site, now, thresholds_of(r.site))
        assert everything is not None
        # All cameras: 2 sightings in 4 camera-hours; 7 alerts in 3 camera-hours.
        assert (everything.baseline.events, everything.baseline.hours) == (2, 4.0)
        assert everything.test.ratio == pytest.approx((7 / 3) / (2 / 4))
        # The dashboard's chart: alert episodes per camera-hour per day, grouped as the guard does.
        days = daily_alert_rates(session, r.site, promoted, now, everything.baseline.gap_s)
        assert [(d.day, d.period, d.events, d.camera_hours) for d in days] == [(T0.date(), "day", 7, 3.0)]


def test_a_new_rollout_model_starts_its_shadow_window_again(factory: sessionmaker[Session]) -> None:
    from shadow.gates import GateOutcome, evaluate_gate

    with factory.begin() as session:
        r = Rows(session)
        now = T0 + timedelta(days=8)
        first = evaluate_gate(session, r.site, now)
        assert {c.name: c for c in first.checks}["shadow_window_days"].value == pytest.approx(8.0)
        # Five days in, the site gets another rollout model.
        set_rollout_model(session, r.site, r.models[1], actor="t", now=T0 + timedelta(days=5))
        window = {c.name: c for c in evaluate_gate(session, r.site, now).checks}["shadow_window_days"]
        assert window.value == pytest.approx(3.0) and window.outcome is GateOutcome.INCONCLUSIVE


def test_a_lingering_bear_s_burst_of_alerts_is_one_episode_for_the_guard(factory: sessionmaker[Session]) -> None:
    """A quiet site (2 confirmed sightings in 2 days of 2 cameras) goes expanded; one bear
    then lingers at camera 0 and the model alerts every 20 minutes for 2 hours (each alert
    more than the cooldown after the last): the guard counts one episode, not 7, so one
    bear does not read as a 7x alert rate; the chart counts it the same way."""
    from shadow.guard import rate_decision

    with factory.begin() as session:
        r = Rows(session)
        for hour in range(48):
            for cam in (0, 1):
                r.frame(cam, 60 * hour + 30)
        r.frame(0, 60 * 5 + 10, verdicts=(C,))
        r.frame(1, 60 * 30 + 10, verdicts=(C,))
        promoted = T0 + timedelta(hours=48)
        r.site.stage, r.site.stage_since = Stage.EXPANDED, promoted
        session.add(StageChange(site_id=r.site.id, from_stage=Stage.MANUAL, to_stage=Stage.EXPANDED, actor="t", reason="t",
                                changed_at=promoted))
        for hour in range(48, 54):
            for cam in (0, 1):
                r.frame(cam, 60 * hour + 30)
        for k in range(7):
            f = r.frame(0, 60 * 50 + 20 * k)
            session.add(Alert(site_id=r.site.id, camera_id=r.cams[0].id, frame_id=f.id, stage=Stage.EXPANDED,
                              status=AlertStatus.SENT, idempotency_key=f"burst-{k}", created_at=f.captured_at))
        session.flush()
        now = T0 + timedelta(hours=54)
        t = thresholds_of(r.site)
        cmp = alert_rate_comparison(session, r.site, now, t)
        assert cmp is not None
        assert cmp.baseline.gap_s == episode_gap_s(t) == 3600.0  # a quiet site: the full hour
        assert (cmp.baseline.events, cmp.current.events) == (2, 1)
        assert (cmp.test.low, cmp.test.high) == pytest.approx(episode_band(2, cmp.baseline.hours, 3600.0, 0.5, 2.0))
        assert not rate_decision(cmp.test, t).outside
        assert sum(d.events for d in daily_alert_rates(session, r.site, promoted, now, cmp.baseline.gap_s)) == 1
