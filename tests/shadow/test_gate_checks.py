"""The gates' pure checks, table by table: edges at the thresholds, zero counts, no baseline."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from bearwatch.park_file import Thresholds
from shadow.gates import (
    GateOutcome,
    ShadowEvidence,
    TrialEvidence,
    check_alert_rate_ratio,
    check_cameras_healthy,
    check_no_drift_alarm,
    combine,
    manual_gate_checks,
    trial_gate_checks,
)
from shadow.sequential import proportion_lower
from shadow.sightings import AlertGroup, Sighting, SightingReport, precision_estimate, recall_estimate
from shadow.stats import rate_ratio_test

P, F, I = GateOutcome.PASS, GateOutcome.FAIL, GateOutcome.INCONCLUSIVE  # noqa: E741 - the outcome letters of the tables below
T = Thresholds()


def report(caught: int = 60, found: int = 0, reported: int = 0, bear_alerts: int | None = None, false_alerts: int = 6,
           min_inclusion: float = 1.0, would_be: int | None = None) -> SightingReport:
    """A window's sightings as counts: ``found`` misses from the audit (each a single frame
    the audit showed with probability ``min_inclusion``), ``reported`` misses outside it."""
    at = datetime(2026, 5, 1, tzinfo=timezone.utc)
    miss = [Sighting(1, at, at, 1, False, True, min_inclusion, i) for i in range(found)]
    told = [Sighting(1, at, at, 1, False, False, min_inclusion, i) for i in range(reported)]
    bear = caught if bear_alerts is None else bear_alerts
    # alerts two hours apart: each its own episode (shadow.episodes)
    alerts = tuple(AlertGroup(1, at + timedelta(hours=2 * i), at + timedelta(hours=2 * i), 1, None, i)
                   for i in range(would_be if would_be is not None else bear + false_alerts))
    return SightingReport(alerts=alerts, sightings=(), caught=caught, bear_alerts=bear, false_alerts=false_alerts,
                          unreviewed_alerts=0, misses_found=tuple(miss), misses_reported=tuple(told),
                          min_inclusion=min_inclusion, precision=precision_estimate(bear, bear + false_alerts),
                          recall=recall_estimate(caught, miss, min_inclusion))


def shadow(rep: SightingReport | None = None, **kw: float) -> ShadowEvidence:
    base: dict[str, Any] = dict(window_days=7.0, drift_checks=3, drift_alarms=0, cameras_enabled=2, cameras_online=2,
                                cameras_unknown=0, audited_frames=300, unflagged_frames=3000)
    base.update(kw)
    rep = rep or report()
    base.setdefault("baseline_sightings", rep.caught + rep.misses)
    return ShadowEvidence(sightings=rep, **base)


def by_name(checks: list) -> dict:
    return {c.name: c for c in checks}


def smallest_census_that_passes(threshold: float) -> int:
    n = 1
    while proportion_lower(n, n) < threshold:
        n += 1
    return n


N90 = smallest_census_that_passes(0.9)


@pytest.mark.parametrize(
    ("evidence", "check", "outcome"),
    [
        (shadow(), None, P),  # 60 caught sightings, a full audit with nothing missed
        (shadow(window_days=6.9), "shadow_window_days", I),
        (shadow(audited_frames=299), "audited_frames", I),
        (shadow(report(caught=19, false_alerts=2)), "sightings", I),
        (shadow(report(caught=N90, false_alerts=2)), "sighting_recall", P),  # the least census that can pass
        (shadow(report(caught=N90 - 1, false_alerts=2)), "sighting_recall", I),  # one fewer: wait, do not fail
        (shadow(report(caught=20, false_alerts=2)), "sighting_recall", I),  # issue 11 point 4: 20/20 is not a fail
        (shadow(report(caught=0, false_alerts=0)), "sighting_recall", I),  # nothing to measure
        (shadow(report(caught=60, min_inclusion=0.02)), "sighting_recall", I),  # a 2% audit cannot show 0.9
        (shadow(report(caught=60, min_inclusion=0.02)), "sightings", I),  # ... until 2,422 sightings
        (shadow(report(caught=30, found=30)), "sighting_recall", F),  # the evidence excludes 0.9
        (shadow(report(caught=40, reported=6)), "sighting_recall", F),  # 6 misses reported: recall <= 0.87
        (shadow(report(caught=N90 + 10, reported=2)), "sighting_recall", P),  # 2 reported: listed, not a sample
        (shadow(report(bear_alerts=300, false_alerts=300)), "alert_precision", I),  # 0.5 exactly: undecidable
        (shadow(report(bear_alerts=200, false_alerts=400)), "alert_precision", F),
        (shadow(report(caught=60, would_be=300), baseline_sightings=100), "predicted_alert_ratio", F),  # 3x: guard trips
        (shadow(report(caught=60, would_be=100), baseline_sightings=100), "predicted_alert_ratio", P),
        (shadow(report(caught=60, would_be=230), baseline_sightings=100), "predicted_alert_ratio", I),  # 2.3x, not yet sure
        (shadow(report(caught=60, would_be=20), baseline_sightings=100), "predicted_alert_ratio", F),  # 0.2x
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
        assert combine(checks) is P, [c.detail for c in checks]
    else:
        got = by_name(checks)[check]
        assert got.outcome is outcome, got.detail


def test_an_inconclusive_recall_says_what_would_decide_it() -> None:
    thin = by_name(manual_gate_checks(shadow(report(caught=60, min_inclusion=0.02)), T))["sighting_recall"]
    plan = thin.data["plan"]
    assert plan["more"] > 1000  # at a 2% audit, ~thousands of clean sightings
    assert plan["audit"]["audit_rate"] is not None and plan["audit"]["audit_rate"] > 0.02
    assert "audit of" in thin.detail and "audited frames/day" in thin.detail
    assert thin.data["unit"] == "sightings" and "Horvitz-Thompson" in thin.data["method"]
    census = by_name(manual_gate_checks(shadow(report(caught=20, false_alerts=2)), T))["sighting_recall"]
    more = census.data["plan"]["more"]
    assert more == N90 - 20  # exactly the clean sightings that make a census pass
    assert f"about {more} more caught sightings" in census.detail


def test_a_check_reports_value_threshold_and_data() -> None:
    c = by_name(manual_gate_checks(shadow(report(caught=N90, false_alerts=2)), T))["sighting_recall"]
    assert c.value == pytest.approx(proportion_lower(N90, N90)) and c.threshold == 0.9 and c.comparison == ">="
    assert c.data["successes"] == N90 and c.data["n"] == N90 and c.data["caught"] == N90
    assert f"{N90}/{N90}" in c.detail


def trial(**kw: object) -> TrialEvidence:
    base: dict[str, object] = dict(trial_days=7.0, elapsed_days=7.0, finished=True, alerts_reviewed=50,
                                   alerts_confirmed=40, missed_bears=2, rate=rate_ratio_test(100, 100.0, 100, 100.0))
    base.update(kw)
    return TrialEvidence(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("evidence", "check", "outcome"),
    [
        (trial(), None, P),  # 7 days, 50 reviewed, 40 confirmed, 2 missed sightings
        (trial(finished=False), "trial_finished", I),
        (trial(elapsed_days=6.9), "trial_finished", I),
        (trial(alerts_reviewed=49, alerts_confirmed=40), "alerts_reviewed", I),
        (trial(alerts_confirmed=25), "confirmed_share", I),  # share 0.5: the interval holds it, not yet decided
        (trial(alerts_confirmed=10), "confirmed_share", F),  # the evidence excludes 0.5
        (trial(alerts_reviewed=0, alerts_confirmed=0), "confirmed_share", I),
        (trial(missed_bears=3), "missed_bears", F),
        (trial(missed_bears=0), "missed_bears", P),
        (trial(rate=None), "alert_rate_ratio", I),  # no baseline
        (trial(rate=rate_ratio_test(0, 10.0, 0, 10.0)), "alert_rate_ratio", I),  # nothing either side
        (trial(rate=rate_ratio_test(200, 100.0, 100, 100.0)), "alert_rate_ratio", P),  # exactly 2.0
        (trial(rate=rate_ratio_test(50, 100.0, 100, 100.0)), "alert_rate_ratio", P),  # exactly 0.5
        (trial(rate=rate_ratio_test(201, 100.0, 100, 100.0)), "alert_rate_ratio", I),  # past 2, not significantly
        (trial(rate=rate_ratio_test(49, 100.0, 100, 100.0)), "alert_rate_ratio", I),
        (trial(rate=rate_ratio_test(400, 100.0, 100, 100.0)), "alert_rate_ratio", F),  # 4x: the guard would demote
        (trial(rate=rate_ratio_test(15, 100.0, 100, 100.0)), "alert_rate_ratio", F),
        (trial(rate=rate_ratio_test(5, 100.0, 0, 100.0)), "alert_rate_ratio", I),  # alerts, no sightings: too few
        (trial(rate=rate_ratio_test(60, 100.0, 0, 100.0)), "alert_rate_ratio", F),
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


def test_the_sightings_minimum_is_one_the_recall_check_can_pass_with() -> None:
    """Defaults consistent (design.md section 5): at a full audit the minimum is 51 clean
    sightings and 51 pass; at a 2% thinnest stratum the gate asks for the 2,422 the recall
    bound needs and says why, instead of a minimum of 20 after which it could never pass."""
    at_full = by_name(manual_gate_checks(shadow(report(caught=N90, false_alerts=2)), T))
    assert N90 == T.min_confirmed_bears == 51
    assert at_full["sightings"].outcome is P and at_full["sighting_recall"].outcome is P
    thin = by_name(manual_gate_checks(shadow(report(caught=300, min_inclusion=0.02)), T))["sightings"]
    assert thin.outcome is I and thin.threshold == 2422 == thin.data["needed_to_pass_recall"]
    assert "when misses are found at 0.02" in thin.detail and "51 at a full audit" in thin.detail
    assert by_name(manual_gate_checks(shadow(report(caught=2422, min_inclusion=0.02)), T))["sightings"].outcome is P


def test_the_first_gate_says_what_the_baseline_lets_the_guard_see() -> None:
    """3 weeks of 4 cameras at 0.02 bear episodes per camera-hour (~40) cannot show the
    guard a tripled alert rate within 60 days; the check says so and how many more manual
    days would. Ten times the rate and it would within days."""
    hours = 21 * 24 * 4.0
    thin = by_name(manual_gate_checks(shadow(window_days=21.0, baseline_sightings=40, baseline_camera_hours=hours), T))
    reach = thin["predicted_alert_ratio"].data["guard"]
    assert reach["days_to_demote_3x"] is None and reach["days_to_demote_third"] is None
    assert 0 < reach["more_manual_days_for_3x"] < 60
    assert "would demote a tripled alert rate not within a year" in thin["predicted_alert_ratio"].detail
    busy = by_name(manual_gate_checks(shadow(window_days=21.0, baseline_sightings=400, baseline_camera_hours=hours,
                                             baseline_gap_s=1800.0), T))
    reach = busy["predicted_alert_ratio"].data["guard"]
    assert reach["days_to_demote_3x"] <= 7 and reach["days_to_demote_third"] <= 21
    assert "more_manual_days_for_3x" not in reach
