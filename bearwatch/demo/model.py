"""A small fastai bear/deer/empty classifier trained from scratch on the synthetic footage.

It stands in for the park's real exported model in demos and tests: same kind of file
(``learn.export()`` pickle), trained in about a minute on two CPU cores, nothing downloaded.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable, Literal

import cv2
import numpy as np
from fastai.vision.all import (
    Callback,
    FlipItem,
    ImageDataLoaders,
    Learner,
    Resize,
    ResizeMethod,
    accuracy,
    resnet18,
    set_seed,
    vision_learner,
)

from bearwatch.demo.footage import AnimalKind, FootageSpec, random_placement, render_scene
from bearwatch.progress import ProgressLog, quiet

Echo = Callable[[str], None]

DEMO_CLASSES: tuple[AnimalKind | Literal["empty"], ...] = ("bear", "deer", "empty")
DEMO_MODEL_NAME = "demo-bear-model.pkl"
TRAIN_DIR_NAME = "demo-train"
# Training scenes use seeds from here up; keep evaluation and demo seeds below it.
TRAIN_SEED_BASE = 1_000_000
_TIME_SPAN_S = 240.0  # random times cover several day/night and weather cycles


def make_training_images(
    out_dir: Path, *, per_class: int, seed: int, size: tuple[int, int] = (320, 240), echo: Echo = quiet
) -> Path:
    """Write ``per_class`` JPEGs per class to ``out_dir/<class>/``, fastai's parent-label layout.

    Each index ``i`` is one random scene at one random time (day or night, any weather),
    rendered once per class: with a bear, with a deer, and empty, the animals at random
    positions and scales. Since the three images differ only by the animal, the model
    cannot lean on the scene and learns the animals from few examples.
    """
    out_dir = Path(out_dir)
    for cls in DEMO_CLASSES:
        (out_dir / cls).mkdir(parents=True, exist_ok=True)
    progress = ProgressLog("rendering training images", per_class * len(DEMO_CLASSES), unit="images", echo=echo)
    for i in range(per_class):
        rng = np.random.default_rng([seed, i])  # image i does not depend on per_class
        scene_seed = TRAIN_SEED_BASE + int(rng.integers(1_000_000_000))
        spec = FootageSpec(f"train-{scene_seed}", scene_seed, width=size[0], height=size[1])
        t = float(rng.uniform(0.0, _TIME_SPAN_S))
        for cls in DEMO_CLASSES:
            animals = () if cls == "empty" else (random_placement(spec, cls, rng),)
            path = out_dir / cls / f"{i:05d}.jpg"
            if not cv2.imwrite(str(path), render_scene(spec, t, animals), [cv2.IMWRITE_JPEG_QUALITY, 90]):
                raise OSError(f"cannot write training image {path}")
        progress.advance(len(DEMO_CLASSES))
    progress.finish()
    return out_dir


class TrainingProgress(Callback):
    """Training as lines: every few seconds how many batches of the run are done with an
    estimate of the time left, and after each epoch its losses and accuracy."""

    order = 60  # after fastai's Recorder (50), which has just stored the epoch's values

    def __init__(self, echo: Echo) -> None:
        self.echo = echo
        self.progress: ProgressLog | None = None

    def before_fit(self) -> None:
        batches = self.n_epoch * len(self.dls.train)
        self.progress = ProgressLog("training the demo model", batches, unit="batches", echo=self.echo)

    def after_batch(self) -> None:
        if self.training and self.progress is not None:
            self.progress.advance(detail=f"epoch {self.epoch + 1}/{self.n_epoch}")

    def after_epoch(self) -> None:
        names = [str(n) for n in self.recorder.metric_names[1:-1]]  # drop "epoch" and "time"
        figures = ", ".join(f"{n} {v:.3f}" for n, v in zip(names, self.recorder.values[-1], strict=False))
        self.echo(f"training the demo model: epoch {self.epoch + 1}/{self.n_epoch} done, {figures}")

    def after_fit(self) -> None:
        if self.progress is not None:
            self.progress.finish()


def train_demo_model(
    out_path: Path,
    *,
    per_class: int = 800,
    epochs: int = 4,
    image_size: int = 48,
    seed: int = 0,
    arch: Callable = resnet18,
    echo: Echo = quiet,
) -> Path:
    """Render training images into ``demo-train/`` next to ``out_path``, train, export there.

    The defaults fit about a minute on two CPU cores: from scratch, the network needs
    many small steps more than it needs pixels, hence 48 px inputs, no dropout, flips.
    Frames are squished, not centre-cropped, to the square input so that animals at the
    left and right edges of the 4:3 frame stay in view.
    """
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    train_dir = out_path.parent / TRAIN_DIR_NAME
    shutil.rmtree(train_dir, ignore_errors=True)  # stale images from other settings would mix in
    make_training_images(train_dir, per_class=per_class, seed=seed, echo=echo)
    set_seed(seed, reproducible=True)
    dls = ImageDataLoaders.from_folder(
        train_dir,
        valid_pct=0.2,
        seed=seed,
        item_tfms=[Resize(image_size, method=ResizeMethod.Squish), FlipItem(0.5)],
        bs=32,
        num_workers=0,  # two cores, and no forked workers inside test runs
    )
    learn = vision_learner(dls, arch, pretrained=False, metrics=accuracy, ps=0.0)
    with learn.no_bar(), learn.no_logging():
        learn.fit_one_cycle(epochs, 5e-3, cbs=[TrainingProgress(echo)])
    _export_atomically(learn, out_path)
    return out_path


def _export_atomically(learn: Learner, out_path: Path) -> None:
    """Export to a temp file in the same directory, then rename: readers never see half a pickle."""
    fd, tmp_name = tempfile.mkstemp(dir=out_path.parent, prefix=f".{out_path.stem}.", suffix=".pkl")
    os.close(fd)
    try:
        learn.export(Path(tmp_name))
        os.replace(tmp_name, out_path)
    finally:
        Path(tmp_name).unlink(missing_ok=True)


def ensure_demo_model(directory: Path, echo: Echo = quiet) -> Path:
    """The demo model at ``directory/demo-bear-model.pkl``, trained only if missing."""
    directory = Path(directory)
    path = directory / DEMO_MODEL_NAME
    if not path.exists():
        echo("training the demo model: about a minute on a quiet 2-core machine, far longer on a busy one")
        train_demo_model(path, echo=echo)
    return path
