"""The demo's simulated history looks like the park (issue 16 item 16): camera-size scenes
with day and night as the clock says and bears where the simulated world put them, not
32x24 noise, so a newcomer's first review screen shows something to decide on."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import cv2
import numpy as np
import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from bearwatch.demo.footage import FootageSpec, is_night
from bearwatch.demo.run import HISTORY_SPEC
from bearwatch.demo.simulate import SimSpec, _scene, _scene_phase_s, create_site, is_night_hour, simulate
from bearwatch.schema import Camera, Decision, Frame, Verdict
from tests.shadow.scenario import DAY, SMALL, START


def test_the_scene_light_follows_the_world_clock() -> None:
    clip = FootageSpec("x", 1)
    for hour in range(24):
        slot = datetime(2026, 6, 1, hour, 30)
        assert is_night(clip, _scene_phase_s(slot, clip.day_cycle_s)) == is_night_hour(slot), hour


def test_a_bear_frame_shows_a_bear_on_the_same_scene() -> None:
    spec = SimSpec(seed=3, image_size=(320, 240), scenes=True)
    noon = datetime(2026, 6, 1, 12, 0)
    empty = _scene(spec, 0, noon, bear=False, false_alarm=False).astype(int)
    bear = _scene(spec, 0, noon, bear=True, false_alarm=False).astype(int)
    changed = np.abs(bear - empty).max(axis=2) > 60
    assert empty.shape == (240, 320, 3)
    assert 0.002 < changed.mean() < 0.3, "an animal-sized dark shape, not a different picture"


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_simulated_frames_are_camera_size_scenes_by_day_and_night(
    factory: sessionmaker[Session], tmp_path: Path
) -> None:
    spec = SimSpec(seed=2, cameras=1, frame_interval_s=3600, visit_rate_per_hour=0.5, image_size=(320, 240),
                   scenes=True)
    with factory.begin() as session:
        site = create_site(session, "meadow", spec, START, tmp_path / "models", SMALL)
        simulate(session, site, spec, START, START + 2 * DAY, tmp_path / "frames")
    with factory() as session:
        frames = list(session.scalars(sa.select(Frame).join(Camera).where(Camera.site_id == site.id)))
        confirmed = set(session.scalars(sa.select(Decision.frame_id).where(Decision.verdict == Verdict.CONFIRM)))
    assert len(frames) == 48
    for frame in frames:
        img = cv2.imread(str(tmp_path / "frames" / frame.path))
        assert img is not None and img.shape == (240, 320, 3)
        grey = bool(np.abs(img.astype(int) - img[..., :1].astype(int)).max() <= 6)  # IR at night: no colour
        assert grey == is_night_hour(frame.captured_at), frame.captured_at
        assert float(img.std()) > 10, "a scene, not a flat texture"
    assert confirmed, "rangers confirmed bears in the simulated history"


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_history_simulated_day_by_day_repeats_no_image(factory: sessionmaker[Session], tmp_path: Path) -> None:
    """simulate_rollout runs day by day; a frame equal to yesterday's byte for byte is a frozen
    camera to drift and the guard, so the demo's history never got past its drift check."""
    spec = SimSpec(seed=2, cameras=1, frame_interval_s=3600, image_size=(64, 48), scenes=True)
    with factory.begin() as session:
        site = create_site(session, "meadow", spec, START, tmp_path / "models", SMALL)
        for day in range(3):
            simulate(session, site, spec, START + day * DAY, START + (day + 1) * DAY, tmp_path / "frames")
    with factory() as session:
        shas = list(session.scalars(sa.select(Frame.sha256).join(Camera).where(Camera.site_id == site.id)))
    assert len(shas) == 72 and len(set(shas)) == len(shas)


def test_the_demo_history_uses_camera_size_scenes() -> None:
    assert HISTORY_SPEC.scenes and HISTORY_SPEC.image_size == (320, 240)
