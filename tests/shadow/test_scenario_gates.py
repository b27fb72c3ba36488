"""Scenario: a good model on a simulated site passes manual -> limited and later
limited -> expanded; every check is reported (SQLite and PostgreSQL)."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from bearwatch.demo.simulate import SimSpec, create_site, simulate
from bearwatch.schema import Stage
from shadow.drift import run_drift_check
from shadow.gates import GateOutcome, evaluate_gate
from shadow.rollout import record_stage_change
from tests.shadow.scenario import DAY, SMALL, START


def test_good_model_passes_both_gates(factory: sessionmaker[Session], tmp_path: Path) -> None:
    # A model that catches every visit, by day and night; the rangers err as usual.
    spec = SimSpec(seed=1, model_recall=0.995, night_recall_factor=1.0, model_precision=0.9)
    with factory.begin() as session:
        site = create_site(session, "north", spec, START, tmp_path / "models", SMALL)
        summary = simulate(session, site, spec, START, START + 7 * DAY, tmp_path / "frames")
        assert summary.frames == 2 * 7 * 96 and summary.alerts == 0  # manual: no alerts
        early = evaluate_gate(session, site, START + 3 * DAY)
        assert early.outcome is GateOutcome.INCONCLUSIVE  # window too short
        assert {c.name: c.outcome for c in early.checks}["shadow_window_days"] is GateOutcome.INCONCLUSIVE
        now = START + 7 * DAY
        drift = run_drift_check(session, site, now)
        assert drift.event_id is not None and not drift.alarm, drift.detail
        gate = evaluate_gate(session, site, now)
        assert gate.outcome is GateOutcome.PASS, [c.detail for c in gate.checks]
        assert (gate.from_stage, gate.to_stage) == (Stage.MANUAL, Stage.LIMITED)
        assert {c.name for c in gate.checks} >= {"sighting_recall", "alert_precision", "predicted_alert_ratio", "no_drift_alarm"}
        record_stage_change(session, site, Stage.LIMITED, actor="ops", reason="gate passed", now=now,
                            evidence=gate.as_evidence(), trial=(now, now + 7 * DAY))

    with factory.begin() as session:
        from shadow.sites import get_site

        site = get_site(session, "north")
        limited = simulate(session, site, spec, START + 7 * DAY, START + 14 * DAY, tmp_path / "frames")
        assert limited.alerts > 30
        mid = evaluate_gate(session, site, START + 10 * DAY)
        assert {c.name: c.outcome for c in mid.checks}["trial_finished"] is GateOutcome.INCONCLUSIVE
        gate = evaluate_gate(session, site, START + 14 * DAY)
        checks = {c.name: c for c in gate.checks}
        assert gate.outcome is GateOutcome.PASS, [c.detail for c in gate.checks]
        assert 0.5 <= checks["alert_rate_ratio"].value <= 2.0
        assert checks["alerts_reviewed"].value == limited.alerts  # every limited alert is reviewed
        record_stage_change(session, site, Stage.EXPANDED, actor="ops", reason="gate passed",
                            now=START + 14 * DAY, evidence=gate.as_evidence())
        assert site.stage is Stage.EXPANDED and site.trial_start is None


def test_simulated_rollout_reaches_expanded_and_a_later_shift_sends_it_back(
    factory: sessionmaker[Session], tmp_path: Path
) -> None:
    from bearwatch.demo.simulate import simulate_rollout

    # Three-day windows: a census audit and a 0.7 recall bar let three days of sightings decide.
    quick = SMALL.model_copy(update={"shadow_days": 3, "trial_days": 3, "min_reviewed": 60, "min_confirmed_bears": 15,
                                     "min_alerts_reviewed": 15, "min_recall_lower": 0.7, "audit_rate": 1.0,
                                     "audit_near_rate": 1.0})
    spec = SimSpec(seed=11, model_recall=0.995, night_recall_factor=1.0, model_precision=0.9, night_shift_from=START + 8 * DAY)
    with factory.begin() as session:
        site = create_site(session, "lake", spec, START, tmp_path / "models", quick)
        events = simulate_rollout(session, site, spec, START, 9, tmp_path / "frames")
        assert [(e.what, e.detail) for e in events[:2]] == [("promoted", "manual -> limited"), ("promoted", "limited -> expanded")]
        assert events[0].at == START + 3 * DAY and events[1].at == START + 6 * DAY
        # The night-time shift on day 8: a drift alarm, and the guard demotes the site.
        assert [e.what for e in events[2:]] == ["drift alarm", "demoted"]
        assert site.stage is Stage.MANUAL
