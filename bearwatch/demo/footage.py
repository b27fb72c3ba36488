"""Deterministic synthetic campsite camera footage with known ground truth.

Every frame is a pure function of ``(spec, t)``: a fixed, seeded scene per camera, a
day/night cycle (grey IR frames at night), weather, sensor noise and animals that walk
across the frame during known events. Demos and tests use it as video whose truth is known.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable, Literal, Sequence

import cv2
import numpy as np

AnimalKind = Literal["bear", "deer"]


@dataclass(frozen=True)
class AnimalEvent:
    """One animal crossing the frame between ``start_s`` (inclusive) and ``end_s`` (exclusive)."""

    kind: AnimalKind
    start_s: float
    end_s: float


@dataclass(frozen=True)
class FootageSpec:
    """One synthetic camera clip; ``events`` empty means "generated from the seed"."""

    name: str
    seed: int
    duration_s: float = 120.0
    fps: int = 5
    width: int = 320
    height: int = 240
    day_cycle_s: float = 60.0  # one full day+night cycle
    events: tuple[AnimalEvent, ...] = ()

    def __post_init__(self) -> None:
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed}")
        if self.duration_s <= 0 or self.fps <= 0 or self.day_cycle_s <= 0:
            raise ValueError("duration_s, fps and day_cycle_s must be positive")
        if self.width < 32 or self.height < 32:
            raise ValueError(f"frame size {self.width}x{self.height} is below 32x32")

    @property
    def frame_count(self) -> int:
        return int(round(self.duration_s * self.fps))


@dataclass(frozen=True)
class AnimalPlacement:
    """Where one animal stands in one frame."""

    kind: AnimalKind
    x: float  # body centre, fraction of the frame width
    y: float  # line of the feet, fraction of the frame height
    length: float  # body length, fraction of the frame width
    facing: int  # +1 looks/walks right, -1 left
    shade: float  # 0..1, picks the coat colour
    gait: float = 0.0  # leg swing phase, radians


DEMO_CAMERAS: tuple[FootageSpec, ...] = (
    FootageSpec("north-trailhead", seed=11),
    FootageSpec("north-creek", seed=23),
    FootageSpec("lake-shore", seed=37),
    FootageSpec("lake-campground", seed=41),
)

_SLOT_S = 20.0  # three event slots per minute; the middle one falls at night by default
_LENGTH = {"bear": (0.24, 0.38), "deer": (0.18, 0.26)}  # body length range, fraction of width
_FOURCC = {".avi": "MJPG", ".mp4": "mp4v"}


def _rng(*keys: int) -> np.random.Generator:
    return np.random.default_rng([int(k) for k in keys])


def events_for(spec: FootageSpec) -> tuple[AnimalEvent, ...]:
    """The clip's events: ``spec.events`` if given, else generated from the seed.

    Each minute holds a bear, a deer and one more of either, shuffled into three
    non-overlapping 20 s slots.
    """
    if spec.events:
        return spec.events
    rng = _rng(spec.seed, 1)
    events: list[AnimalEvent] = []
    kinds: list[AnimalKind] = []
    for slot in range(int(spec.duration_s // _SLOT_S)):
        if slot % 3 == 0:
            kinds = ["bear", "deer", "bear" if rng.random() < 0.5 else "deer"]
            rng.shuffle(kinds)
        length = rng.uniform(6.0, 12.0)
        start = slot * _SLOT_S + rng.uniform(1.0, _SLOT_S - 1.0 - length)
        events.append(AnimalEvent(kinds[slot % 3], round(start, 2), round(start + length, 2)))
    return tuple(events)


def animals_at(spec: FootageSpec, t: float) -> tuple[AnimalKind, ...]:
    """Ground truth: the kinds of the animals in frame at time ``t``."""
    return tuple(e.kind for e in events_for(spec) if e.start_s <= t < e.end_s)


def _sun(spec: FootageSpec, t: float) -> float:
    return math.cos(2 * math.pi * t / spec.day_cycle_s)  # t=0 is noon


def is_night(spec: FootageSpec, t: float) -> bool:
    return _sun(spec, t) < 0.0


def random_placement(spec: FootageSpec, kind: AnimalKind, rng: np.random.Generator) -> AnimalPlacement:
    """A random pose on the ground of ``spec``'s scene; nearer animals are drawn larger."""
    horizon = _horizon(spec.seed)
    depth = rng.uniform(0.3, 1.0)  # 0 at the horizon, 1 at the bottom edge
    length = rng.uniform(*_LENGTH[kind]) * (0.6 + 0.4 * depth)
    half = 0.5 * length + 0.02
    return AnimalPlacement(
        kind=kind,
        x=rng.uniform(half, 1.0 - half),
        y=horizon + depth * (0.97 - horizon),
        length=length,
        facing=1 if rng.random() < 0.5 else -1,
        shade=rng.random(),
        gait=rng.uniform(0.0, 2 * math.pi),
    )


def placements_at(spec: FootageSpec, t: float) -> tuple[AnimalPlacement, ...]:
    """Where the animals of active events are at ``t``: each walks edge to edge over its event."""
    placements = []
    for index, event in enumerate(events_for(spec)):
        if not event.start_s <= t < event.end_s:
            continue
        pose = random_placement(spec, event.kind, _rng(spec.seed, 2, index))
        half = 0.5 * pose.length + 0.02
        progress = (t - event.start_s) / (event.end_s - event.start_s)
        if pose.facing < 0:
            progress = 1.0 - progress
        x = half + progress * (1.0 - 2 * half)
        gait = pose.gait + 2 * math.pi * 1.5 * (t - event.start_s)  # 1.5 strides per second
        placements.append(AnimalPlacement(event.kind, x, pose.y, pose.length, pose.facing, pose.shade, gait))
    return tuple(placements)


# --- the scene: a fixed background per camera seed, and animal silhouettes ---


def _horizon(seed: int) -> float:
    return 0.36 + 0.12 * _rng(seed, 3).random()


def _poly(img: np.ndarray, points: Sequence[tuple[float, float]], colour: tuple[int, ...]) -> None:
    cv2.fillPoly(img, [np.array(points, np.int32)], colour, cv2.LINE_AA)


def _pine(img: np.ndarray, x: int, base: int, size: int, rng: np.random.Generator) -> None:
    trunk = max(1, size // 14)
    cv2.rectangle(img, (x - trunk, base - size // 4), (x + trunk, base), (30, 50, 75), -1)
    green = tuple(int(c) for c in rng.integers((25, 70, 20), (50, 110, 45)))
    for k in range(3):
        top, half = base - size + k * size // 4, size // 5 + k * size // 10
        _poly(img, [(x, top), (x - half, top + size // 2), (x + half, top + size // 2)], green)


def _tent(img: np.ndarray, x: int, base: int, size: int, rng: np.random.Generator) -> None:
    colour = ((40, 110, 230), (200, 120, 40), (60, 200, 230), (60, 60, 180))[int(rng.integers(4))]
    half = size * 2 // 3
    _poly(img, [(x - half, base), (x + half, base), (x, base - size)], colour)
    _poly(img, [(x - half // 4, base), (x + half // 4, base), (x, base - size * 2 // 3)], (30, 30, 35))


def _rock(img: np.ndarray, x: int, base: int, size: int, rng: np.random.Generator) -> None:
    grey = int(rng.integers(95, 150))
    cv2.ellipse(img, (x, base), (size // 2 + 1, size // 3 + 1), 0, 180, 360, (grey, grey, grey - 5), -1, cv2.LINE_AA)


@lru_cache(maxsize=32)
def _background(seed: int, width: int, height: int) -> np.ndarray:
    """Sky, hills, ground, trees, tents and rocks; read-only, callers copy it."""
    rng = _rng(seed, 0)
    hz = int(_horizon(seed) * height)
    jitter = rng.uniform(-15, 15, 3)  # each camera's grass has its own tint
    sky = np.linspace(0.0, 1.0, hz, dtype=np.float32)[:, None, None]
    near = np.linspace(0.0, 1.0, height - hz, dtype=np.float32)[:, None, None]
    img = np.empty((height, width, 3), np.float32)
    img[:hz] = (1 - sky) * np.array((215, 160, 110)) + sky * np.array((235, 215, 195))
    img[hz:] = (1 - near) * (np.array((110, 150, 135)) + jitter) + near * (np.array((55, 105, 90)) + jitter)
    texture = rng.normal(0.0, 12.0, (height // 8 + 1, width // 8 + 1)).astype(np.float32)
    img[hz:] += cv2.resize(texture, (width, height), interpolation=cv2.INTER_CUBIC)[hz:, :, None]
    img = np.clip(img, 0, 255).astype(np.uint8)
    ridge = hz - rng.uniform(0.03, 0.12, 12) * height
    _poly(img, [(0, hz), *zip(np.linspace(0, width, 12), ridge, strict=True), (width, hz)], (120, 125, 100))
    items = [
        (rng.uniform(0.05, 1.0), rng.uniform(0.0, 1.0), draw, scale)
        for draw, scale, count in ((_pine, 0.45, rng.integers(3, 7)), (_tent, 0.18, rng.integers(1, 3)),
                                   (_rock, 0.08, rng.integers(2, 5)))
        for _ in range(count)
    ]
    for depth, x, draw, scale in sorted(items, key=lambda item: item[0]):  # far ones first
        base = int(hz + depth * (height - hz))
        draw(img, int(x * width), base, int(scale * height * (0.4 + 0.6 * depth)), rng)
    img.setflags(write=False)
    return img


_COATS = {"bear": ((22, 24, 28), (35, 62, 105)), "deer": ((80, 125, 175), (120, 175, 220))}  # BGR dark..light
_CREAM = (175, 205, 225)


@dataclass(frozen=True)
class _Pen:
    """Draws in body-length units around an animal's feet, mirrored by its facing."""

    img: np.ndarray
    x: float
    feet: float
    size: float
    facing: int

    def at(self, dx: float, dy: float) -> tuple[int, int]:
        return int(round(self.x + self.facing * dx * self.size)), int(round(self.feet + dy * self.size))

    def px(self, v: float) -> int:
        return max(1, int(round(v * self.size)))

    def oval(self, dx: float, dy: float, ax: float, ay: float, colour: tuple[int, ...], angle: float = 0.0) -> None:
        cv2.ellipse(self.img, self.at(dx, dy), (self.px(ax), self.px(ay)), self.facing * angle, 0, 360,
                    colour, -1, cv2.LINE_AA)

    def limb(self, x0: float, y0: float, x1: float, y1: float, width: float, colour: tuple[int, ...]) -> None:
        cv2.line(self.img, self.at(x0, y0), self.at(x1, y1), colour, self.px(width), cv2.LINE_AA)


def _bear(pen: _Pen, coat: tuple[int, ...], swing: float) -> None:
    for i, dx in enumerate((-0.3, -0.17, 0.17, 0.3)):  # short, thick legs
        pen.limb(dx, -0.3, dx + (swing if i % 2 else -swing), -0.02, 0.11, coat)
    pen.oval(0.0, -0.42, 0.42, 0.22, coat)  # bulky body
    pen.oval(0.2, -0.52, 0.2, 0.15, coat)  # shoulder hump
    pen.oval(0.47, -0.52, 0.13, 0.13, coat)  # head
    for dx in (0.4, 0.52):
        pen.oval(dx, -0.64, 0.05, 0.05, coat)  # round ears
    pen.oval(0.6, -0.48, 0.08, 0.055, tuple(min(255, c + 35) for c in coat))  # snout
    pen.oval(0.67, -0.5, 0.02, 0.02, (15, 15, 15))


def _deer(pen: _Pen, coat: tuple[int, ...], swing: float) -> None:
    for i, dx in enumerate((-0.3, -0.22, 0.22, 0.3)):  # long, thin legs
        pen.limb(dx, -0.58, dx + (swing if i % 2 else -swing), 0.0, 0.045, coat)
    pen.limb(0.28, -0.7, 0.42, -1.0, 0.1, coat)  # neck
    pen.oval(0.0, -0.66, 0.38, 0.14, coat)  # slim body
    pen.oval(0.0, -0.57, 0.26, 0.05, _CREAM)  # pale belly
    pen.oval(-0.36, -0.7, 0.08, 0.07, _CREAM)  # white rump and tail
    pen.oval(0.5, -1.02, 0.11, 0.055, coat, angle=20)  # head, nose down
    pen.oval(0.4, -1.1, 0.06, 0.025, coat, angle=-60)  # ear


def _draw_animal(img: np.ndarray, animal: AnimalPlacement) -> None:
    h, w = img.shape[:2]
    pen = _Pen(img, animal.x * w, animal.y * h, animal.length * w, animal.facing)
    ground = img[min(h - 1, int(pen.feet)), min(w - 1, max(0, int(pen.x)))]
    pen.oval(0.0, 0.0, 0.5, 0.05, tuple(int(c * 0.6) for c in ground))  # shadow
    dark, light = _COATS[animal.kind]
    coat = tuple(int(d + animal.shade * (lt - d)) for d, lt in zip(dark, light, strict=True))
    swing = 0.08 * math.sin(animal.gait)
    (_bear if animal.kind == "bear" else _deer)(pen, coat, swing)


def _weather(spec: FootageSpec, t: float) -> tuple[float, float]:
    """(fog, rain) strengths in [0, 1]: slow seeded waves, so weather comes and goes."""
    r = _rng(spec.seed, 5).random(4)
    fog = math.sin(2 * math.pi * (t / (80.0 + 60.0 * r[0]) + r[1]))
    rain = math.sin(2 * math.pi * (t / (70.0 + 50.0 * r[2]) + r[3]))
    return min(1.0, max(0.0, (fog - 0.3) / 0.7)), min(1.0, max(0.0, (rain - 0.5) * 4.0))


def _apply_weather(img: np.ndarray, spec: FootageSpec, t: float, rng: np.random.Generator) -> np.ndarray:
    fog, rain = _weather(spec, t)
    if fog > 0:
        img = img * (1.0 - 0.45 * fog) + 0.78 * 0.45 * fog
    if rain > 0:
        h, w = img.shape[:2]
        n = int(rain * 0.002 * w * h)
        start = rng.uniform((0, 0), (w, h), size=(n, 2))
        drop = rng.uniform(6, 14, size=(n, 1)) * np.array([[0.3, 1.0]])  # slanted streaks
        lines = np.stack([start, start + drop], axis=1).astype(np.int32)
        mask = np.zeros((h, w), np.uint8)
        cv2.polylines(mask, list(lines), False, 255, 1)
        alpha = mask.astype(np.float32)[..., None] * (0.35 / 255.0)
        img = img * (1.0 - alpha) + 0.85 * alpha
        img = img * (1.0 - 0.15 * rain) + 0.5 * 0.15 * rain  # rain also lowers contrast
    return img


@lru_cache(maxsize=8)
def _ir_falloff(height: int, width: int) -> np.ndarray:
    """The IR illuminator lights the centre more than the corners."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    r2 = ((xs / width - 0.5) ** 2 + (ys / height - 0.5) ** 2) / 0.5
    falloff = 1.0 - 0.35 * r2
    falloff.setflags(write=False)
    return falloff


def render_scene(spec: FootageSpec, t: float, animals: Sequence[AnimalPlacement]) -> np.ndarray:
    """``spec``'s scene at time ``t`` with exactly ``animals`` in it (BGR uint8, HxWx3)."""
    if t < 0:
        raise ValueError(f"time must be >= 0, got {t}")
    frame = _background(spec.seed, spec.width, spec.height).copy()
    for animal in animals:
        _draw_animal(frame, animal)
    rng = _rng(spec.seed, 4, round(t * 1000))  # fresh noise per millisecond of clip time
    img = _apply_weather(frame.astype(np.float32) * (1.0 / 255.0), spec, t, rng)
    sun = _sun(spec, t)
    if sun < 0.0:  # night: the camera switches to monochrome IR, darker and noisier
        grey = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY) * ((0.55 + 0.08 * sun) * _ir_falloff(spec.height, spec.width))
        grey += rng.standard_normal(grey.shape, dtype=np.float32) * 0.04
        img = np.repeat(grey[..., None], 3, axis=2)
    else:  # day: brightest at noon, dimmer and warmer towards dusk
        dusk = 1.0 - sun
        tint = np.array([1.0 - 0.25 * dusk, 1.0 - 0.1 * dusk, 1.0], np.float32)
        img = img * ((0.65 + 0.35 * sun) * tint)
        img += rng.standard_normal(img.shape, dtype=np.float32) * 0.015
    return (np.clip(img, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def render_frame(spec: FootageSpec, t: float) -> np.ndarray:
    """The camera frame at time ``t`` (BGR uint8, HxWx3); deterministic for ``(spec, t)``."""
    return render_scene(spec, t, placements_at(spec, t))


def ground_truth(spec: FootageSpec) -> dict[str, object]:
    """The JSON-ready truth written next to a video."""
    return {
        "name": spec.name,
        "seed": spec.seed,
        "fps": spec.fps,
        "duration_s": spec.duration_s,
        "frame_count": spec.frame_count,
        "width": spec.width,
        "height": spec.height,
        "day_cycle_s": spec.day_cycle_s,
        "events": [asdict(e) for e in events_for(spec)],
    }


def _write_atomically(path: Path, write: Callable[[Path], object]) -> None:
    """Write via a temp file in the same directory (same suffix, for OpenCV), then rename."""
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=path.suffix)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _write_frames(spec: FootageSpec, fourcc: str, tmp: Path) -> None:
    writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter.fourcc(*fourcc), spec.fps, (spec.width, spec.height))
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot open a {fourcc} video writer for {tmp}")
    try:
        for i in range(spec.frame_count):
            writer.write(render_frame(spec, i / spec.fps))
    finally:
        writer.release()


def write_video(spec: FootageSpec, path: Path) -> Path:
    """Write the clip (``.avi``: MJPG, ``.mp4``: mp4v) and its ``.json`` ground-truth sidecar."""
    path = Path(path)
    fourcc = _FOURCC.get(path.suffix.lower())
    if fourcc is None:
        raise ValueError(f"unsupported video suffix {path.suffix!r}; use one of {sorted(_FOURCC)}")
    path.parent.mkdir(parents=True, exist_ok=True)
    truth = json.dumps(ground_truth(spec), indent=2)
    # The sidecar goes first, so a video that exists always has its truth next to it.
    _write_atomically(path.with_suffix(".json"), lambda tmp: tmp.write_text(truth))
    _write_atomically(path, lambda tmp: _write_frames(spec, fourcc, tmp))
    return path


def ensure_demo_footage(directory: Path, specs: Sequence[FootageSpec] = DEMO_CAMERAS) -> dict[str, Path]:
    """Demo clips ``directory/<name>.avi`` by camera name; only missing ones are generated."""
    paths = {spec.name: Path(directory) / f"{spec.name}.avi" for spec in specs}
    missing = [s for s in specs if not (paths[s.name].exists() and paths[s.name].with_suffix(".json").exists())]
    # NumPy and OpenCV release the GIL in the heavy parts, so threads use all cores.
    with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
        list(pool.map(lambda spec: write_video(spec, paths[spec.name]), missing))
    return paths
