"""The gates' pure checks, table by table: edges at the thresholds, zero counts, no baseline."""

from __future__ import annotations

import pytest

from bearwatch.config import Thresholds
from shadow.gates import (
    GateOutcome,
    ShadowEvidence,
    TrialEvidence,
    check_alert_rate_ratio,
    check_cameras_healthy,
    check_lower_bound,
    check_no_drift_alarm,
    combine,
    manual_gate_checks,
    trial_gate_checks,
)
from shadow.agreement import Confusion
from shadow.stats import rate_ratio_test

P, F, I = GateOutcome.PASS, GateOutcome.FAIL, GateOutcome.INCONCLUSIVE
T = Thresholds()


def shadow(**kw: float) -> ShadowEvidence:
    counts = dict(tp=300, fp=100, fn=0, tn=200, disputed=0)
    base = dict(window_days=7.0, drift_checks=3, drift_alarms=0, cameras_enabled=2, cameras_online=2, cameras_unknown=0)
    for key, value in kw.items():
        (counts if key in counts else base)[key] = value
    return ShadowEvidence(confusion=Confusion(**counts), **base)  # type: ignore[arg-type]


def by_name(checks: list) -> dict:
    return {c.name: c for c in checks}


@pytest.mark.parametrize(
    ("evidence", "check", "outcome"),
    [
        (shadow(), None, P),  # everything good
        (shadow(window_days=7.0), "shadow_window_days", P),  # exactly at 7 days
        (shadow(window_days=6.99), "shadow_window_days", I),
        (shadow(tp=20, fn=0, fp=0, tn=280), "reviewed_frames", P),  # exactly 300 reviewed
        (shadow(tp=20, fn=0, fp=0, tn=279), "reviewed_frames", I),
        (shadow(tp=20, fn=0, fp=0, tn=280), "confirmed_bears", P),  # exactly 20 bears
        (shadow(tp=19, fn=0, fp=0, tn=281), "confirmed_bears", I),
        (shadow(tp=0, fn=0, fp=0, tn=0), "recall_lower_bound", I),  # zero counts: nothing to measure
        (shadow(tp=0, fn=0, fp=0, tn=0), "precision_lower_bound", I),
        (shadow(tp=5, fn=5, fp=0, tn=0), "recall_lower_bound", F),  # upper bound < 0.9: fails early
        (shadow(tp=19, fn=0, fp=0, tn=5, window_days=2), "recall_lower_bound", I),  # 19/19 lower .83: wait for more
        (shadow(tp=35, fn=0, fp=0, tn=300), "recall_lower_bound", P),  # 35/35: lower bound 0.901
        (shadow(tp=34, fn=0, fp=0, tn=300), "recall_lower_bound", F),  # 34/34: lower 0.898, data complete
        (shadow(tp=300, fp=300), "precision_lower_bound", F),  # 0.5 point estimate: lower bound below 0.5
        (shadow(drift_alarms=1), "no_drift_alarm", F),
        (shadow(drift_checks=0), "no_drift_alarm", I),
        (shadow(cameras_online=1), "cameras_healthy", F),
        (shadow(cameras_online=1, cameras_unknown=1), "cameras_healthy", I),
        (shadow(cameras_enabled=0, cameras_online=0), "cameras_healthy", I),
    ],
)
def test_manual_to_limited_checks(evidence: ShadowEvidence, check: str | None, outcome: GateOutcome) -> None:
    checks = manual_gate_checks(evidence, T)
    if check is None:
        assert combine(checks) is P
        assert [c.name for c in checks] == [
            "shadow_window_days", "reviewed_frames", "confirmed_bears", "recall_lower_bound",
            "precision_lower_bound", "no_drift_alarm", "cameras_healthy",
        ]
    else:
        got = by_name(checks)[check]
        assert got.outcome is outcome, got.detail
        if outcome is not P:
            assert combine(checks) is outcome  # the rest of the evidence passes


def test_a_check_reports_value_threshold_and_data() -> None:
    c = check_lower_bound("recall_lower_bound", 35, 35, 0.9, enough_data=True)
    assert c.value == pytest.approx(0.9011, abs=1e-4) and c.threshold == 0.9 and c.comparison == ">="
    assert c.data["successes"] == 35 and c.data["n"] == 35
    assert "35/35" in c.detail


def trial(**kw: object) -> TrialEvidence:
    base: dict[str, object] = dict(trial_days=7.0, elapsed_days=7.0, finished=True, alerts_reviewed=50,
                                   alerts_confirmed=25, missed_bears=2, rate=rate_ratio_test(100, 100.0, 100, 100.0))
    base.update(kw)
    return TrialEvidence(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("evidence", "check", "outcome"),
    [
        (trial(), None, P),  # exactly at every threshold: 7 days, 50 reviewed, share .5, 2 missed
        (trial(finished=False), "trial_finished", I),
        (trial(elapsed_days=6.9), "trial_finished", I),
        (trial(alerts_reviewed=49, alerts_confirmed=25), "alerts_reviewed", I),
        (trial(alerts_confirmed=24), "confirmed_share", F),
        (trial(alerts_reviewed=0, alerts_confirmed=0), "confirmed_share", I),
        (trial(missed_bears=3), "missed_bears", F),
        (trial(missed_bears=0), "missed_bears", P),
        (trial(rate=None), "alert_rate_ratio", I),  # no baseline
        (trial(rate=rate_ratio_test(0, 10.0, 0, 10.0)), "alert_rate_ratio", I),  # nothing either side
        (trial(rate=rate_ratio_test(200, 100.0, 100, 100.0)), "alert_rate_ratio", P),  # exactly 2.0
        (trial(rate=rate_ratio_test(50, 100.0, 100, 100.0)), "alert_rate_ratio", P),  # exactly 0.5
        (trial(rate=rate_ratio_test(201, 100.0, 100, 100.0)), "alert_rate_ratio", F),
        (trial(rate=rate_ratio_test(49, 100.0, 100, 100.0)), "alert_rate_ratio", F),
        (trial(rate=rate_ratio_test(5, 100.0, 0, 100.0)), "alert_rate_ratio", F),  # alerts, no sightings: infinite
    ],
)
def test_limited_to_expanded_checks(evidence: TrialEvidence, check: str | None, outcome: GateOutcome) -> None:
    checks = trial_gate_checks(evidence, T)
    if check is None:
        assert combine(checks) is P, [c.detail for c in checks]
    else:
        got = by_name(checks)[check]
        assert got.outcome is outcome, got.detail


def test_small_checks() -> None:
    assert check_no_drift_alarm(0, 0).outcome is I
    assert check_no_drift_alarm(5, 0).outcome is P
    assert check_cameras_healthy(3, 3, 0).outcome is P
    inf = check_alert_rate_ratio(rate_ratio_test(5, 10.0, 0, 10.0), T)
    assert inf.value is None and inf.data["ratio"] is None  # JSON-safe: no inf in the evidence
    assert combine([]) is I
