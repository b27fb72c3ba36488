"""Drift: a night-time domain shift raises a stored alarm with its numbers; a camera going
dark (black frames, or offline) does not (SQLite and PostgreSQL). Plus the pure metrics."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from bearwatch.demo.simulate import SimSpec, create_site, simulate
from bearwatch.park_file import Thresholds
from bearwatch.schema import DriftEvent
from shadow.drift import compute_drift, drift_metrics, run_drift_check
from shadow.drift_windows import WindowData
from shadow.gates import GateOutcome, evaluate_gate
from tests.shadow.scenario import DAY, SMALL, START

SHIFT = START + 7 * DAY
NOW = START + 8 * DAY


def _window(rng: np.random.Generator, n: int, brightness: float = 100.0, ood: float = 0.5, emb_shift: float = 0.0) -> WindowData:
    emb = rng.normal(size=(n, 8))
    emb[:, 0] += emb_shift
    return WindowData(
        brightness=rng.normal(brightness, 10, n), sharpness=rng.normal(50, 5, n), night=rng.random(n) < 0.4,
        scores=rng.random(n), flagged=rng.random(n) < 0.1, ood=np.abs(rng.normal(ood, 0.2, n)), embeddings=emb,
    )


def test_drift_metrics_alarm_only_on_a_real_shift() -> None:
    rng = np.random.default_rng(0)
    t = Thresholds()
    same = drift_metrics(_window(rng, 400), _window(rng, 200), t)
    assert set(same) == {"brightness", "sharpness", "night_share", "positive_score", "flag_rate", "ood_share", "embedding_mmd"}
    assert not any(m["alarm"] for m in same.values())
    shifted = drift_metrics(_window(rng, 400), _window(rng, 200, brightness=60, ood=2.0, emb_shift=2.0), t)
    assert {k for k, m in shifted.items() if m["alarm"]} == {"brightness", "ood_share", "embedding_mmd"}
    assert shifted["ood_share"]["current"] > 0.9 and shifted["ood_share"]["reference"] < 0.05
    # A significant but tiny change does not alarm: the effect threshold.
    tiny = drift_metrics(_window(rng, 4000), _window(rng, 4000, brightness=102), t)
    assert tiny["brightness"]["p_value"] < t.drift_significance and not tiny["brightness"]["alarm"]


def test_night_time_domain_shift_raises_a_stored_alarm(factory: sessionmaker[Session], tmp_path: Path) -> None:
    spec = SimSpec(seed=4, night_shift_from=SHIFT)
    with factory.begin() as session:
        site = create_site(session, "north", spec, START, tmp_path / "models", SMALL)
        simulate(session, site, spec, START, NOW, tmp_path / "frames")
        before = run_drift_check(session, site, SHIFT)  # the day before the shift: quiet
        assert before.event_id is not None and not before.alarm, before.detail
        check = run_drift_check(session, site, NOW)
        assert check.alarm and check.event_id is not None
        alarming = {k for k, m in check.metrics.items() if m["alarm"]}
        assert {"ood_share", "embedding_mmd", "brightness"} <= alarming
        assert "flag_rate" not in alarming  # the model's flag rate did not move
        gate = evaluate_gate(session, site, NOW)
        drift_check = {c.name: c for c in gate.checks}["no_drift_alarm"]
        assert drift_check.outcome is GateOutcome.FAIL and drift_check.data["drift_alarms"] == 1
    with factory() as session:
        event = session.get(DriftEvent, check.event_id)
        assert event is not None and event.alarm
        assert event.window_start == NOW - timedelta(hours=24) and event.reference_start == START
        assert event.reference_end == NOW - timedelta(hours=24)  # manual: the reference stops where the window starts
        assert event.metrics["ood_share"]["p_value"] < event.thresholds["drift_significance"]


@pytest.mark.parametrize("mode", ["black", "frozen", "offline"])
def test_a_camera_going_dark_is_not_drift(factory: sessionmaker[Session], tmp_path: Path, mode: str) -> None:
    spec = SimSpec(seed=5, cameras=3, dark_from=SHIFT, dark_mode=mode)
    with factory.begin() as session:
        site = create_site(session, "lake", spec, START, tmp_path / "models", SMALL)
        simulate(session, site, spec, START, NOW, tmp_path / "frames")
        check = run_drift_check(session, site, NOW)
        assert check.event_id is not None
        assert not check.alarm, check.detail
        # The dark camera's frames were left out, not compared (a frozen one counts once).
        assert check.metrics["brightness"]["n_current"] == 2 * 96 + (mode == "frozen")
        assert session.scalar(sa.select(sa.func.count()).select_from(DriftEvent).where(DriftEvent.alarm)) == 0


def test_too_little_data_stores_nothing(factory: sessionmaker[Session], tmp_path: Path) -> None:
    spec = SimSpec(seed=6)
    with factory.begin() as session:
        site = create_site(session, "north", spec, START, tmp_path / "models", SMALL)
        simulate(session, site, spec, START, START + DAY, tmp_path / "frames")
        check = compute_drift(session, site, START + DAY)
        assert check.reference is None and not check.alarm  # one day in manual: no reference before the window
        assert run_drift_check(session, site, START + DAY).event_id is None
        assert session.scalar(sa.select(sa.func.count()).select_from(DriftEvent)) == 0
