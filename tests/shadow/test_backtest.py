"""Backtest with the real demo model on a small site of rendered demo-footage frames with
ranger verdicts (SQLite and PostgreSQL): its scores equal learn.predict's, its agreement
and alert rate are reported, and the HTML report embeds the worst disagreements."""

from __future__ import annotations

import warnings
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from bearwatch.demo.simulate import SimSpec, add_footage_frames, create_site
from bearwatch.errors import ModelError
from shadow.backtest import frame_loss, run_backtest
from shadow.backtest_report import render_html
from tests.shadow.scenario import SMALL, START

COUNT = 40


def test_frame_loss() -> None:
    assert frame_loss(0.9, True) == pytest.approx(0.10536, abs=1e-5)  # -ln 0.9
    assert frame_loss(0.9, False) == pytest.approx(2.302585, abs=1e-5)  # -ln 0.1
    assert frame_loss(1.0, False) > 10  # clipped, finite


def test_backtest_replays_frames_and_writes_a_report(
    factory: sessionmaker[Session], tmp_path: Path, model_export_path: Path
) -> None:
    frames_root = tmp_path / "frames"
    end = START + timedelta(seconds=COUNT * 600)
    with factory.begin() as session:
        # A 5-minute cooldown: the footage frames, 10 minutes apart, are a sighting each.
        site = create_site(session, "north", SimSpec(cameras=1), START, tmp_path / "models",
                           SMALL.model_copy(update={"alert_cooldown_s": 300}))
        bears = add_footage_frames(session, site, frames_root, START, count=COUNT, seed=7)
        ticks: list[int] = []
        report = run_backtest(session, site, model_export_path, frames_root, start=START, end=end,
                              positive=["bear"], threshold=0.5, batch_size=16, progress=ticks.append)
    assert 10 <= bears <= 30
    assert sum(ticks) == COUNT and len(ticks) == 3  # batches of 16, 16, 8
    assert report.frames == COUNT and not report.failed
    c = report.agreement.confusion
    assert c.reviewed == COUNT and c.bears == bears
    # A tiny model (conftest): how good it is is not the point here (tests/demo tests the demo
    # model's accuracy); the confusion must count the replayed flags against the footage's truth.
    assert c.tp + c.fn == bears and c.tp + c.fp == report.flagged
    assert report.agreement.recall.value == pytest.approx(c.tp / bears)
    assert report.rate is not None and report.rate.baseline.events == bears  # a sighting per bear frame (10 min apart)
    assert report.alerts == report.flagged
    assert {ch.name for ch in report.gate} >= {"sighting_recall", "alert_precision", "audited_frames"}
    recall = {ch.name: ch for ch in report.gate}["sighting_recall"]
    assert recall.data["n"] > 0 and recall.data["unit"] == "sightings"  # the candidate's own sightings
    losses = [d.loss for d in report.worst]
    assert losses == sorted(losses, reverse=True) and len(losses) == 12

    # The scores are the learner's own: compare with learn.predict on a few frames.
    from fastai.learner import load_learner

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        learn = load_learner(model_export_path, cpu=True)
    bear_idx = list(learn.dls.vocab).index("bear")
    for d in report.worst[:3]:
        with learn.no_bar():
            _, _, probs = learn.predict(frames_root / d.frame.path)
        assert d.frame.score == pytest.approx(float(probs[bear_idx]), abs=1e-4)

    page = render_html(report, frames_root)
    assert page.count("data:image/jpeg;base64,") == len(report.worst)
    assert "sighting_recall" in page and "<script" not in page
    out = tmp_path / "report.html"
    out.write_text(page, encoding="utf-8")
    assert out.stat().st_size > 5000


def test_backtest_refuses_an_unknown_positive_class(factory: sessionmaker[Session], tmp_path: Path, model_export_path: Path) -> None:
    with factory.begin() as session:
        site = create_site(session, "north", SimSpec(cameras=1), START, tmp_path / "models", SMALL)
        add_footage_frames(session, site, tmp_path / "frames", START, count=2)
        with pytest.raises(ModelError, match="wolf"):
            run_backtest(session, site, model_export_path, tmp_path / "frames", start=START, end=START + timedelta(days=1),
                         positive=["wolf"])
