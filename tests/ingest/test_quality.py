"""Frame checks and statistics on real pictures (pure functions)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from ingest.quality import NIGHT_CHROMA_MAX, Rejection, check_frame, frame_stats, is_repeat
from tests.ingest.helpers import scene


@pytest.mark.parametrize(
    ("image", "rejection"),
    [
        (None, Rejection.EMPTY),
        (np.zeros((0, 0, 3), np.uint8), Rejection.EMPTY),
        (np.zeros((240, 320, 3), np.uint8) + 3, Rejection.BLACK),
        (np.full((240, 320, 3), 128, np.uint8), Rejection.GREY),
        (scene(1, (16, 12)), Rejection.WRONG_SIZE),
        (scene(2, (320, 240)), None),
    ],
    ids=["none", "zero-size", "black", "uniform-grey", "too-small", "a-scene"],
)
def test_checks_reject_camera_problems_and_keep_scenes(image: np.ndarray | None, rejection: Rejection | None) -> None:
    assert check_frame(image, None, 0).rejection is rejection


def test_a_dark_night_scene_with_texture_is_kept_not_black() -> None:
    night = (scene(3).astype(np.float32) * 0.15).astype(np.uint8)  # dim but textured
    assert check_frame(night, None, 0).rejection is None


def test_frozen_after_repeated_identical_samples_and_a_change_resets_it() -> None:
    a, b = scene(4), scene(5)
    first = check_frame(a, None, 0)
    assert first.rejection is None
    second = check_frame(a, first.fingerprint, 0)  # one repeat may be a still scene
    assert second.rejection is None and is_repeat(second.fingerprint, first.fingerprint)
    third = check_frame(a, second.fingerprint, 1)
    assert third.rejection is Rejection.FROZEN
    # the same JPEG decoded again (a camera resending its last image) is frozen too
    again = cv2.imdecode(cv2.imencode(".jpg", a)[1], cv2.IMREAD_COLOR)
    fp = check_frame(again, None, 0).fingerprint
    assert check_frame(cv2.imdecode(cv2.imencode(".jpg", a)[1], cv2.IMREAD_COLOR), fp, 1).rejection is Rejection.FROZEN
    assert check_frame(b, second.fingerprint, 1).rejection is None


def test_a_live_static_scene_with_sensor_noise_is_never_frozen() -> None:
    rng = np.random.default_rng(0)
    still = scene(8).astype(np.float32)
    previous, repeats = None, 0
    for _ in range(6):
        live = np.clip(still + rng.normal(0, 2.0, still.shape), 0, 255).astype(np.uint8)  # sensor noise
        check = check_frame(live, previous, repeats)
        assert check.rejection is None
        repeats = repeats + 1 if is_repeat(check.fingerprint, previous) else 0
        previous = check.fingerprint


def test_stats_brightness_contrast_sharpness_night_and_change() -> None:
    colour = scene(6)
    grey_ir = cv2.cvtColor(cv2.cvtColor(colour, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)
    blurred = cv2.GaussianBlur(colour, (15, 15), 5)
    s_colour, s_ir, s_blur = frame_stats(colour), frame_stats(grey_ir), frame_stats(blurred)
    assert (s_colour.width, s_colour.height) == (320, 240)
    assert not s_colour.is_night and s_ir.is_night
    assert s_blur.sharpness < s_colour.sharpness / 4
    assert 0 < s_colour.brightness < 255 and s_colour.contrast > 10
    assert s_colour.change_score is None
    prev = check_frame(colour, None, 0).thumb
    assert frame_stats(colour, prev).change_score == pytest.approx(0, abs=1e-6)
    assert frame_stats(scene(7), prev).change_score > 0.05


@pytest.mark.parametrize("kind", ["colour", "night-ir", "dark", "720p"])
def test_stats_are_their_definitions(kind: str) -> None:
    # What drift and health views compare across cameras and releases: pinned to the
    # plain definitions (however frame_stats computes them).
    image = {
        "colour": lambda: scene(9),
        "night-ir": lambda: cv2.cvtColor(cv2.cvtColor(scene(10), cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR),
        "dark": lambda: (scene(11).astype(np.float32) * 0.1).astype(np.uint8),
        "720p": lambda: scene(12, (1280, 720)),
    }[kind]()
    grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY).astype(np.float64)
    chroma = np.abs(image.astype(np.float64) - grey[..., None]).mean()
    laplacian = cv2.filter2D(grey, cv2.CV_64F, np.array([[0, 1, 0], [1, -4, 1], [0, 1, 0]], np.float64),
                             borderType=cv2.BORDER_REFLECT_101)
    stats = frame_stats(image)
    assert stats.brightness == pytest.approx(grey.mean(), rel=1e-9)
    assert stats.contrast == pytest.approx(grey.std(), rel=1e-9)
    assert stats.sharpness == pytest.approx(laplacian.var(), rel=1e-9)
    assert stats.is_night is bool(chroma < NIGHT_CHROMA_MAX)
