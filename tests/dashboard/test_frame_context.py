"""The Review page's context of a frame (issue 16 item 3), on SQLite and PostgreSQL: the
queries (dashboard.queries.frame_context) and the page under AppTest: the strip of the
camera's neighbouring frames, the chart of its bear score with the threshold and the
frame marked, the zoom, and the heat-map overlay of a flagged frame."""

from __future__ import annotations

import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker
from streamlit.dataframe_util import convert_arrow_bytes_to_pandas_df
from streamlit.testing.v1 import AppTest

from bearwatch.localtime import local, local_text
from bearwatch.schema import (
    Frame,
    FrameStatus,
    ModelRole,
    ModelVersion,
    Prediction,
    PredictionHeatmap,
    Stage,
    utcnow,
)
from dashboard.frame_context_view import heat_peak, overlay, zoomed
from dashboard.queries.frame_context import FrameHeatmap, frame_context, score_history
from ingest.store import FrameStore
from shadow.alerts import process_new_flags
from shadow.rollout import record_stage_change
from shadow.sites import get_site, set_rollout_model
from tests.dashboard.conftest import login, open_app, page_text
from tests.dashboard.seed import PASSWORD, Seeded

# A 4x4 heat map hot in its top-right cell.
HOT_TOP_RIGHT = bytes([0, 0, 40, 255, 0, 0, 30, 120, 0, 0, 0, 10, 0, 0, 0, 0])


def _add_frames(factory: sessionmaker[Session], frames_dir: Path, camera_id: int, model_id: int,
                shots: list[tuple[datetime, float]], challenger_id: int | None = None) -> list[int]:
    """Frames of the camera at the given times with the rollout model's score (and a
    challenger's opposite score, which the page must not show)."""
    store = FrameStore(frames_dir)
    ids = []
    with factory.begin() as session:
        site_id = session.scalar(sa.text("SELECT site_id FROM cameras WHERE id = :c").bindparams(c=camera_id))
        for at, score in shots:
            image = np.full((120, 160, 3), 70 + int(score * 100), np.uint8)
            stored = store.write(site_id, camera_id, at, cv2.imencode(".jpg", image)[1].tobytes())
            frame = Frame(camera_id=camera_id, captured_at=at, path=stored.path, sha256=stored.sha256,
                          size_bytes=stored.size_bytes, width=160, height=120, status=FrameStatus.SCORED)
            session.add(frame)
            session.flush()
            session.add(Prediction(frame_id=frame.id, model_version_id=model_id, positive_score=score,
                                   flagged=score >= 0.5, probabilities={"bear": score, "deer": 0.0, "empty": 1 - score}))
            if challenger_id is not None:
                session.add(Prediction(frame_id=frame.id, model_version_id=challenger_id, positive_score=1 - score,
                                       flagged=score < 0.5, probabilities={"bear": 1 - score, "deer": 0.0, "empty": score}))
            ids.append(frame.id)
    return ids


def _challenger(factory: sessionmaker[Session]) -> int:
    with factory.begin() as session:
        model = ModelVersion(name="challenger", path="/models/c.pkl", sha256="cd" * 32, classes=["bear", "deer", "empty"],
                             positive_classes=["bear"], threshold=0.5, role=ModelRole.CHALLENGER)
        session.add(model)
        session.flush()
        return model.id


def _add_heatmap(factory: sessionmaker[Session], frame_id: int, model_id: int) -> None:
    with factory.begin() as session:
        pid = session.scalar(sa.select(Prediction.id).where(Prediction.frame_id == frame_id,
                                                            Prediction.model_version_id == model_id))
        session.add(PredictionHeatmap(prediction_id=pid, method="grad-cam", grid_rows=4, grid_cols=4, cells=HOT_TOP_RIGHT))


def test_frame_context_neighbours_history_and_heat_map(park: Seeded, factory: sessionmaker[Session], tmp_path: Path) -> None:
    now = utcnow()
    challenger = _challenger(factory)
    creek = park.camera_ids["creek"]
    # Ten frames 30 s apart, 20-15 minutes ago; the sixth is flagged (0.9). Two more over an hour ago.
    base = now - timedelta(minutes=20)
    shots = [(base + timedelta(seconds=30 * i), 0.9 if i == 5 else 0.1 + 0.01 * i) for i in range(10)]
    old = [(now - timedelta(minutes=90), 0.2), (now - timedelta(minutes=75), 0.3)]
    ids = _add_frames(factory, tmp_path / "frames", creek, park.model_id, shots + old, challenger)
    _add_frames(factory, tmp_path / "frames", park.camera_ids["gate"], park.model_id, [(shots[5][0], 0.4)])
    flagged = ids[5]
    _add_heatmap(factory, flagged, park.model_id)

    with factory() as session:
        ctx = frame_context(session, flagged, now)
        quiet = frame_context(session, ids[2], now)
        gone = frame_context(session, 10**9, now)
    assert gone is None
    assert ctx is not None and quiet is not None
    assert ctx.site == "north" and ctx.model == "demo-bear" and ctx.threshold == 0.5
    # The strip: three before, the frame, three after, of this camera only, oldest first.
    assert [n.frame_id for n in ctx.neighbours] == ids[2:9]
    assert [n.current for n in ctx.neighbours] == [False, False, False, True, False, False, False]
    assert [n.score for n in ctx.neighbours] == pytest.approx([s for _, s in shots[2:9]]), "the rollout model's scores"
    assert [n.flagged for n in ctx.neighbours] == [False, False, False, True, False, False, False]
    # The hour up to now (the frame is 17 minutes old): the ten frames and creek's seeded two
    # (one flagged at 0.93, 3 s ago), not the ones over an hour ago, not the challenger's.
    assert ctx.history_to == now and ctx.history_from == now - timedelta(hours=1)
    assert [p.captured_at for p in ctx.history] == sorted(p.captured_at for p in ctx.history)
    assert len(ctx.history) == 12 and not ctx.history_truncated
    assert [p.score for p in ctx.history][:10] == pytest.approx([s for _, s in shots])
    assert ctx.history[-1].score == pytest.approx(0.93) and ctx.history[-1].flagged
    # The heat map of the flagged frame; none for an unflagged one.
    assert ctx.heatmap == FrameHeatmap("grad-cam", 4, 4, HOT_TOP_RIGHT)
    assert quiet.heatmap is None
    # Only two frames before the first of the ten (the old ones): the strip is shorter.
    with factory() as session:
        first = frame_context(session, ids[0], now)
        oldest = frame_context(session, ids[10], now)  # 90 minutes old: its own hour, around it
    assert first is not None and [n.frame_id for n in first.neighbours] == [ids[10], ids[11], ids[0], *ids[1:4]]
    assert oldest is not None and oldest.history_to == old[0][0] + timedelta(minutes=10)
    assert [p.score for p in oldest.history] == pytest.approx([0.2]), "to 10 min after it: not the frame 15 min later"

    # Bounded: the newest of the window when it holds more than the limit.
    with factory() as session:
        points, truncated = score_history(session, creek, park.model_id, now - timedelta(hours=1), now, limit=3)
    assert truncated and [p.score for p in points] == pytest.approx([0.19, 0.05, 0.93])


def test_a_site_without_a_rollout_model_shows_the_strip_unscored(park: Seeded, factory: sessionmaker[Session]) -> None:
    with factory() as session:
        shore = session.scalars(sa.select(Frame.id).where(Frame.camera_id == park.camera_ids["shore"])
                                .order_by(Frame.captured_at)).all()
        ctx = frame_context(session, shore[-1], utcnow())
    assert ctx is not None and ctx.model is None and ctx.threshold is None
    assert [n.frame_id for n in ctx.neighbours] == list(shore)
    assert all(n.score is None for n in ctx.neighbours)
    assert ctx.history == () and ctx.heatmap is None


def test_overlay_and_zoom_change_the_picture_where_they_should() -> None:
    heat = FrameHeatmap("grad-cam", 4, 4, HOT_TOP_RIGHT)
    grey = np.full((120, 160, 3), 128, np.uint8)
    shown = overlay(grey, heat)
    assert np.abs(shown[10, 150].astype(int) - 128).sum() > 60, "the hot corner is coloured"
    assert np.array_equal(shown[110, 10], grey[110, 10]), "where the map is zero the frame shows through"
    assert heat_peak(heat) == (0.875, 0.125)
    # 2x on the top right: the top-right quarter fills the picture.
    marked = grey.copy()
    marked[0:60, 80:160] = 250
    assert zoomed(marked, 2, heat_peak(heat)).min() > 240
    assert np.array_equal(zoomed(marked, 1, (0.5, 0.5)), marked)


@pytest.fixture
def review_context_park(park: Seeded, factory: sessionmaker[Session], tmp_path: Path) -> tuple[Seeded, list[int]]:
    """north in a limited trial, so creek's flagged frame (a held alert) is reviewed first,
    then south's audit frames; creek gets six earlier frames over the last half hour, and its flag a heat map."""
    now = utcnow()
    with factory.begin() as session:
        record_stage_change(session, get_site(session, "north"), Stage.LIMITED, actor="test", reason="trial",
                            now=now - timedelta(hours=1), trial=(now - timedelta(hours=1), now + timedelta(days=7)))
        south = get_site(session, "south")  # scored too, every unflagged frame in the audit sample
        set_rollout_model(session, south, session.get(ModelVersion, park.model_id), actor="test", now=now)
        south.thresholds = {**(south.thresholds or {}), "audit_rate": 1.0}
    earlier = _add_frames(factory, tmp_path / "frames", park.camera_ids["creek"], park.model_id,
                          [(now - timedelta(minutes=30 - 4 * i), 0.1 + 0.05 * i) for i in range(6)])
    with factory() as session:
        creek_frames = session.scalars(sa.select(Frame.id).where(Frame.camera_id == park.camera_ids["creek"])
                                       .order_by(Frame.captured_at)).all()
    flagged = creek_frames[-1]
    _add_heatmap(factory, flagged, park.model_id)
    process_new_flags(factory, utcnow())
    assert set(earlier) < set(creek_frames)
    return park, list(creek_frames)


def _charts(app: AppTest) -> list[tuple[str, list[pd.DataFrame]]]:
    """Each chart's Vega-Lite spec and its data frames."""
    return [(e.proto.spec, [convert_arrow_bytes_to_pandas_df(d.data.data) for d in e.proto.datasets])
            for e in app.get("vega_lite_chart")]


def _image_urls(app: AppTest) -> list[str]:
    """The page's pictures (media URLs: each names a hash of the picture's bytes)."""
    return [url for e in app.get("image") for url in e.value]


def test_review_screen_shows_the_strip_the_chart_and_the_heat_map_toggle(
    review_context_park: tuple[Seeded, list[int]], factory: sessionmaker[Session]
) -> None:
    park, creek_frames = review_context_park
    app = login(open_app(), "ranger", PASSWORD)
    app.switch_page("views/review.py").run()
    assert not app.exception
    assert "**north / creek**" in page_text(app), "creek's held alert is on screen"

    # The strip: the flagged frame outlined and marked, its three predecessors, times in the site's clock.
    strip = next(str(m.value) for m in app.markdown if "bw-strip" in str(m.value))
    assert strip.count("bw-strip-frame") == 4 and strip.count("bw-strip-current") == 1
    assert "▶ this frame" in strip and "⚠ flagged" in strip
    with factory() as session:
        zone = session.scalar(sa.text("SELECT timezone FROM sites WHERE name = 'north'"))
        times = session.scalars(sa.select(Frame.captured_at).where(Frame.id.in_(creek_frames[-4:]))
                                .order_by(Frame.captured_at)).all()
    for t in times:
        assert local_text(t, zone, seconds=True) in strip
    assert strip.index(local_text(times[-1], zone, seconds=True)) > strip.index(local_text(times[0], zone, seconds=True))

    # The chart: the camera's scores over the hour, the threshold and the frame marked.
    ((_spec, frames),) = _charts(app)
    scores = sorted(round(float(v), 2) for f in frames if "bear score" in f for v in f["bear score"])
    assert scores == sorted([0.05, 0.93, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35]), "creek's scores of the hour"
    assert [list(f["threshold"]) for f in frames if "threshold" in f] == [[0.5]], "the site's threshold"
    (marked,) = [f for f in frames if "what" in f]
    assert list(marked["what"]) == ["this frame"]
    assert marked["time"].iloc[0] == pd.Timestamp(local(times[-1], zone).replace(tzinfo=None)), "at its local time"

    # The heat map toggle: enabled for this flagged frame; on, the picture changes and says what it shows.
    toggle = app.toggle(key="review_heatmap")
    assert not toggle.disabled and not toggle.value
    plain = _image_urls(app)
    assert len(plain) == 1
    toggle.set_value(True).run()
    assert not app.exception
    assert "heat map (grad-cam, 4×4): red is where demo-bear looked most" in page_text(app)
    assert _image_urls(app) != plain

    # Zoom 2x on the heat map's peak.
    app.selectbox(key="review_zoom").select("2×").run()
    app.selectbox(key="review_zoom_on").select("heat map peak").run()
    assert "zoom 2× on the heat map peak" in page_text(app)
    zoomed_in = _image_urls(app)
    assert len(zoomed_in) == 1 and zoomed_in != plain
    assert not app.exception
    # The buttons behind the z and o keys step the zoom and its centre, round.
    app.button(key="review_zoom_step").click().run()
    assert "zoom 3× on the heat map peak" in page_text(app)
    app.button(key="review_zoom_on_step").click().run()
    assert "zoom 3× on the top left" in page_text(app)
    app.button(key="review_zoom_step").click().run()
    app.button(key="review_zoom_step").click().run()
    assert app.selectbox(key="review_zoom").value == "1×" and "× on the" not in page_text(app)  # 4× -> 1×: no zoom

    # Dismiss: the next frame (south's audit frame, not flagged) has no heat map to show.
    app.button(key="review_dismiss").click().run()
    while "**north / creek**" in page_text(app):
        app.button(key="review_dismiss").click().run()
    assert "**south / shore**" in page_text(app)
    assert app.toggle(key="review_heatmap").disabled
    assert "no heat map: the rollout model did not flag this frame" in page_text(app)
    assert not app.exception


def test_the_review_context_loads_no_model() -> None:
    """The dashboard reads stored heat maps: its context modules import neither torch nor fastai."""
    code = ("import sys, dashboard.frame_context_view, dashboard.queries.frame_context; "
            "print(sorted(m for m in ('torch', 'fastai') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True)
    assert out.stdout.strip() == "[]"
