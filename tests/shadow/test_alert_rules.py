"""The alert rules, table by table (pure functions)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from bearwatch.schema import AlertStatus, Stage, Verdict
from shadow import alert_rules
from shadow.alert_rules import Effect

START = datetime(2026, 6, 1, 0, 0, tzinfo=timezone.utc)
END = START + timedelta(days=7)


@pytest.mark.parametrize(
    ("scope", "camera", "when", "expected"),
    [
        ({}, 1, START, True),
        ({}, 1, START - timedelta(seconds=1), False),  # before the trial
        ({}, 1, END, False),  # the end is exclusive: after the trial, as in manual
        ({"cameras": [1, 2]}, 2, START + timedelta(hours=1), True),
        ({"cameras": [1, 2]}, 3, START + timedelta(hours=1), False),
        ({"hours": [20, 21, 22, 23, 0, 1]}, 1, START + timedelta(hours=21), True),
        ({"hours": [20, 21, 22, 23, 0, 1]}, 1, START + timedelta(hours=12), False),
        ({"cameras": [1], "hours": [3]}, 1, START + timedelta(hours=3, minutes=59), True),
        ({"cameras": [1], "hours": [3]}, 2, START + timedelta(hours=3), False),
    ],
)
def test_trial_scope(scope: dict[str, list[int]], camera: int, when: datetime, expected: bool) -> None:
    assert alert_rules.in_trial_scope(scope, START, END, camera, when) is expected


def test_no_trial_window_means_out_of_scope() -> None:
    assert alert_rules.in_trial_scope({}, None, None, 1, START) is False


@pytest.mark.parametrize(
    ("stage", "in_scope", "expected"),
    [
        (Stage.MANUAL, True, None),
        (Stage.MANUAL, False, None),
        (Stage.LIMITED, True, AlertStatus.PENDING),
        (Stage.LIMITED, False, None),
        (Stage.EXPANDED, False, AlertStatus.QUEUED),
        (Stage.EXPANDED, True, AlertStatus.QUEUED),
    ],
)
def test_flag_alert_status(stage: Stage, in_scope: bool, expected: AlertStatus | None) -> None:
    assert alert_rules.flag_alert_status(stage, in_scope) is expected


P, Q, S, X, D = AlertStatus.PENDING, AlertStatus.QUEUED, AlertStatus.SUPPRESSED, AlertStatus.SENT, AlertStatus.DEAD


@pytest.mark.parametrize(
    ("verdict", "flagged", "status", "sighting", "expected"),
    [
        (Verdict.CONFIRM, True, P, False, Effect.RELEASE),  # limited: confirming sends it
        (Verdict.CONFIRM, True, S, False, Effect.RELEASE),  # a confirm beats another ranger's dismiss
        (Verdict.CONFIRM, True, Q, False, Effect.NONE),  # expanded: already out
        (Verdict.CONFIRM, True, X, False, Effect.NONE),
        (Verdict.CONFIRM, True, None, False, Effect.SIGHTING),  # manual: the confirm is the alert
        (Verdict.CONFIRM, True, None, True, Effect.NONE),  # another ranger already sent the sighting
        (Verdict.DISMISS, True, P, False, Effect.SUPPRESS),
        (Verdict.DISMISS, True, Q, False, Effect.NONE),
        (Verdict.DISMISS, True, None, False, Effect.NONE),
        (Verdict.DISMISS, False, None, False, Effect.NONE),  # audit: no bear
        (Verdict.MISSED, False, None, False, Effect.SIGHTING),
        (Verdict.MISSED, False, None, True, Effect.NONE),
        (Verdict.MISSED, False, D, False, Effect.SIGHTING),
    ],
)
def test_verdict_effect(verdict: Verdict, flagged: bool, status: AlertStatus | None, sighting: bool, expected: Effect) -> None:
    assert alert_rules.verdict_effect(verdict, flagged, status, sighting) is expected


@pytest.mark.parametrize(
    ("verdict", "flagged", "ok"),
    [(Verdict.CONFIRM, True, True), (Verdict.CONFIRM, False, False), (Verdict.DISMISS, False, True),
     (Verdict.DISMISS, True, True), (Verdict.MISSED, False, True), (Verdict.MISSED, True, False)],
)
def test_verdict_fits(verdict: Verdict, flagged: bool, ok: bool) -> None:
    problem = alert_rules.check_verdict_fits(verdict, flagged, 7)
    assert (problem is None) is ok
    if problem:
        assert "frame 7" in problem


@pytest.mark.parametrize(
    ("seconds", "cooldown", "expected"), [(0, 300, True), (300, 300, True), (301, 300, False), (-120, 300, True), (10, 0, False)]
)
def test_cooldown(seconds: float, cooldown: float, expected: bool) -> None:
    assert alert_rules.within_cooldown(START, START + timedelta(seconds=seconds), cooldown) is expected


def test_audit_sample_is_stable_and_near_its_rate() -> None:
    ids = range(1, 200_001)
    picked = [i for i in ids if alert_rules.in_audit_sample(i, 0.02)]
    assert 0.018 < len(picked) / len(ids) < 0.022
    assert picked == [i for i in ids if alert_rules.in_audit_sample(i, 0.02)]
    # Unbiased over position: both halves of the id range get their share.
    first = sum(1 for i in picked if i <= 100_000)
    assert 0.45 < first / len(picked) < 0.55
    assert not any(alert_rules.in_audit_sample(i, 0.0) for i in range(1, 1000))
    assert all(alert_rules.in_audit_sample(i, 1.0) for i in range(1, 1000))


@pytest.mark.parametrize(
    ("flagged", "status", "words"),
    [(True, P, "sends the alert"), (True, None, "sighting alert"), (True, Q, "already went out"),
     (True, S, "dismissed"), (False, None, "missed")],
)
def test_confirm_text(flagged: bool, status: AlertStatus | None, words: str) -> None:
    assert words in alert_rules.confirm_text(flagged, status)


def test_every_effect_has_one_text_for_people() -> None:
    """The CLI's `verdict` line and the Review page say the same thing (alert_rules.EFFECT_TEXT)."""
    assert set(alert_rules.EFFECT_TEXT) == set(Effect)
    assert alert_rules.EFFECT_TEXT[Effect.LATE] == "the frame is more than 1 h old, so no live alert goes out"
