"""Fitting a model's out-of-domain reference from a folder of images like its training data."""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bearwatch.errors import ModelError
from bearwatch.images import IMAGE_SUFFIXES
from bearwatch.progress import ProgressLog, quiet
from inference.decode import FrameDecoder, FrameFile
from inference.ood import MIN_REFERENCE_IMAGES, OodReference, fit_reference
from inference.runner import ModelRunner

MAX_REFERENCE_IMAGES = 1000


def reference_images(directory: Path, limit: int = MAX_REFERENCE_IMAGES, seed: int = 0) -> list[Path]:
    paths = sorted(p for p in directory.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if len(paths) > limit:
        paths = sorted(random.Random(seed).sample(paths, limit))
    return paths


def fit_model_reference(
    learner: Any, directory: Path, batch_size: int = 64, echo: Callable[[str], None] = quiet
) -> OodReference:
    """Embed the folder's images with the model (on the CPU) and fit the reference; up to
    1,000 images, minutes on a busy CPU, so progress goes to ``echo`` as lines."""
    if not directory.is_dir():
        raise ModelError(f"reference folder {directory} does not exist")
    paths = reference_images(directory)
    if len(paths) < MIN_REFERENCE_IMAGES:
        raise ModelError(f"reference folder {directory} has {len(paths)} images; need at least {MIN_REFERENCE_IMAGES}")
    runner = ModelRunner(learner, torch.device("cpu"))
    decoder = FrameDecoder(directory, threads=2)
    chunks = []
    progress = ProgressLog("fitting the out-of-domain reference", len(paths), unit="images", echo=echo)
    try:
        for start in range(0, len(paths), batch_size):
            frames = [FrameFile(i, str(p.relative_to(directory))) for i, p in enumerate(paths[start:start + batch_size])]
            prepared = decoder.prepare(frames, {runner.preprocessor.key: runner.preprocessor})
            if prepared.frame_ids:
                out = runner(prepared.inputs[runner.preprocessor.key], features=True)
                if out.ood_features is None:
                    raise ModelError("the model has neither a fastai body nor a linear head to take features from")
                chunks.append(out.ood_features.numpy())
            progress.advance(len(frames))
    finally:
        decoder.close()
    progress.finish()
    return fit_reference(np.concatenate(chunks))
