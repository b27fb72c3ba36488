"""Synthetic footage: real video files read back with OpenCV, deterministic frames, known truth."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from itertools import pairwise
from pathlib import Path

import cv2
import numpy as np
import pytest

from bearwatch.demo.footage import (
    DEMO_CAMERAS,
    AnimalEvent,
    FootageSpec,
    animals_at,
    ensure_demo_footage,
    events_for,
    is_night,
    render_frame,
    render_scene,
    write_video,
)

SPEC = FootageSpec("test-cam", seed=3, duration_s=60.0)  # has a day bear and a night bear


def _midpoint(event: AnimalEvent) -> float:
    return (event.start_s + event.end_s) / 2


def _bear_time(spec: FootageSpec, *, night: bool) -> float:
    bears = [e for e in events_for(spec) if e.kind == "bear" and is_night(spec, _midpoint(e)) == night]
    assert bears, f"{spec.name} has no {'night' if night else 'day'} bear event"
    return _midpoint(bears[0])


def _read_all(path: Path) -> tuple[list[np.ndarray], float]:
    capture = cv2.VideoCapture(str(path))
    assert capture.isOpened(), f"OpenCV cannot open {path}"
    fps = capture.get(cv2.CAP_PROP_FPS)
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    capture.release()
    return frames, fps


@pytest.fixture(scope="module", params=[".avi", ".mp4"])
def video(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_video(SPEC, tmp_path_factory.mktemp("footage") / f"test-cam{request.param}")


def test_video_reads_back_with_expected_frames_size_and_fps(video: Path) -> None:
    frames, fps = _read_all(video)
    assert abs(len(frames) - SPEC.frame_count) <= 1
    assert fps == pytest.approx(SPEC.fps)
    assert {f.shape for f in frames} == {(SPEC.height, SPEC.width, 3)}
    # What comes back is the rendered frame, up to compression loss.
    t = _bear_time(SPEC, night=False)
    index = round(t * SPEC.fps)
    assert np.abs(frames[index].astype(np.int16) - render_frame(SPEC, index / SPEC.fps)).mean() < 8


def test_write_leaves_only_the_video_and_its_sidecar(video: Path) -> None:
    assert sorted(p.name for p in video.parent.iterdir()) == sorted([video.name, video.with_suffix(".json").name])


def test_sidecar_holds_the_ground_truth(video: Path) -> None:
    truth = json.loads(video.with_suffix(".json").read_text())
    assert tuple(AnimalEvent(**e) for e in truth["events"]) == events_for(SPEC)
    assert truth["fps"] == SPEC.fps
    assert truth["duration_s"] == SPEC.duration_s
    assert truth["frame_count"] == SPEC.frame_count


def test_unsupported_video_suffix_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unsupported video suffix"):
        write_video(SPEC, tmp_path / "clip.mkv")
    assert list(tmp_path.iterdir()) == []


def test_invalid_spec_is_refused() -> None:
    with pytest.raises(ValueError):
        FootageSpec("bad", seed=1, fps=0)
    with pytest.raises(ValueError):
        FootageSpec("bad", seed=-1)


def test_frames_are_deterministic_in_and_across_processes(tmp_path: Path) -> None:
    t = 12.4
    frame = render_frame(SPEC, t)
    assert frame.dtype == np.uint8 and frame.shape == (SPEC.height, SPEC.width, 3)
    assert np.array_equal(frame, render_frame(replace(SPEC), t))
    out = tmp_path / "frame.npy"
    script = (
        "import sys, numpy as np\n"
        "from bearwatch.demo.footage import FootageSpec, render_frame\n"
        f"np.save(sys.argv[1], render_frame(FootageSpec('test-cam', seed=3, duration_s=60.0), {t}))\n"
    )
    subprocess.run([sys.executable, "-c", script, str(out)], check=True, cwd=Path(__file__).parents[2])
    assert np.array_equal(frame, np.load(out))
    assert not np.array_equal(frame, render_frame(SPEC, t + 0.2))  # noise is fresh each frame
    assert not np.array_equal(frame, render_frame(replace(SPEC, seed=8), t))


def test_night_frames_are_grey_and_darker_than_day_frames() -> None:
    times = np.arange(0.0, SPEC.duration_s, 0.5)
    night = [render_frame(SPEC, t).astype(np.int16) for t in times if is_night(SPEC, t)]
    day = [render_frame(SPEC, t).astype(np.int16) for t in times if not is_night(SPEC, t)]
    assert night and day

    def spread(frame: np.ndarray) -> float:  # how far the channels are apart, per pixel
        return float((frame.max(axis=2) - frame.min(axis=2)).mean())

    assert max(spread(f) for f in night) < 1.0
    assert min(spread(f) for f in day) > 10.0
    assert np.mean([f.mean() for f in night]) < 0.75 * np.mean([f.mean() for f in day])


# The night bear of SPEC walks through fog, so its contrast is low: the threshold is lower.
@pytest.mark.parametrize(("night", "levels"), [(False, 30), (True, 10)], ids=["day", "night"])
def test_a_bear_changes_the_frame_clearly(night: bool, levels: int) -> None:
    t = _bear_time(SPEC, night=night)
    assert animals_at(SPEC, t) == ("bear",)
    with_bear = render_frame(SPEC, t).astype(np.int16)
    empty = render_scene(SPEC, t, ()).astype(np.int16)  # same noise, same weather, no animal
    changed = np.abs(with_bear - empty).max(axis=2) > levels
    assert changed.mean() > 0.02  # a bear covers a solid patch of the frame


def test_events_alternate_bears_and_deer_without_overlap() -> None:
    for spec in DEMO_CAMERAS:
        events = events_for(spec)
        assert events == events_for(replace(spec))
        assert all(a.end_s <= b.start_s for a, b in pairwise(events))
        assert all(0.0 <= e.start_s < e.end_s <= spec.duration_s for e in events)
        for minute in range(int(spec.duration_s // 60)):
            kinds = {e.kind for e in events if minute * 60 <= e.start_s < (minute + 1) * 60}
            assert kinds == {"bear", "deer"}, f"{spec.name} minute {minute}: {kinds}"
        assert any(is_night(spec, _midpoint(e)) for e in events)
        assert any(not is_night(spec, _midpoint(e)) for e in events)
    assert len({s.name for s in DEMO_CAMERAS}) == len({s.seed for s in DEMO_CAMERAS}) == 4


def test_given_events_replace_generated_ones() -> None:
    spec = replace(SPEC, events=(AnimalEvent("deer", 1.0, 3.0),))
    assert events_for(spec) == spec.events
    assert animals_at(spec, 0.9) == ()
    assert animals_at(spec, 1.0) == ("deer",)
    assert animals_at(spec, 3.0) == ()


def test_ensure_demo_footage_generates_only_what_is_missing(tmp_path: Path) -> None:
    specs = (FootageSpec("cam-a", seed=1, duration_s=4.0), FootageSpec("cam-b", seed=2, duration_s=4.0))
    paths = ensure_demo_footage(tmp_path, specs)
    assert set(paths) == {"cam-a", "cam-b"}
    assert all(p.exists() and p.with_suffix(".json").exists() for p in paths.values())
    mtimes = {name: p.stat().st_mtime_ns for name, p in paths.items()}

    assert ensure_demo_footage(tmp_path, specs) == paths
    assert {name: p.stat().st_mtime_ns for name, p in paths.items()} == mtimes

    paths["cam-a"].unlink()
    ensure_demo_footage(tmp_path, specs)
    assert paths["cam-a"].exists()
    assert paths["cam-b"].stat().st_mtime_ns == mtimes["cam-b"]
