"""Exactly fastai's answer: the worker's preprocessing and forward reproduce
`learn.predict` for learners exported with each resize method, with normalisation."""

from __future__ import annotations

import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from bearwatch.demo.footage import DEMO_CAMERAS, FootageSpec, render_frame
from inference.decode import FrameDecoder, FrameFile
from inference.runner import ModelRunner

METHODS = ("crop", "squish", "pad")


def _images(directory: Path) -> Path:
    """A tiny two-class folder of 320x240 frames (non-square, so the resize methods differ)."""
    spec = DEMO_CAMERAS[1]
    for label, times in {"a": range(0, 60, 4), "b": range(60, 120, 4)}.items():
        (directory / label).mkdir(parents=True, exist_ok=True)
        for t in times:
            cv2.imwrite(str(directory / label / f"{t}.jpg"), render_frame(spec, float(t)))
    return directory


@pytest.fixture(scope="module")
def learners(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from fastai.vision.all import (
        ImageDataLoaders,
        Normalize,
        Resize,
        ResizeMethod,
        imagenet_stats,
        resnet18,
        set_seed,
        vision_learner,
    )

    root = tmp_path_factory.mktemp("parity")
    folder = _images(root / "images")
    exports = {}
    for method in METHODS:
        set_seed(0)
        dls = ImageDataLoaders.from_folder(
            folder, valid_pct=0.25, seed=0, bs=8, num_workers=0,
            item_tfms=Resize(40, method=getattr(ResizeMethod, method.capitalize())),
            batch_tfms=Normalize.from_stats(*imagenet_stats),
        )
        learn = vision_learner(dls, resnet18, pretrained=False)
        with learn.no_bar(), learn.no_logging(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            learn.fit(1, 1e-3)
        exports[method] = root / f"{method}.pkl"
        learn.export(exports[method])
    return exports


@pytest.mark.parametrize("method", METHODS)
def test_probabilities_equal_learn_predict_within_1e_4(method: str, learners: dict[str, Path], tmp_path: Path) -> None:
    from fastai.learner import load_learner

    learn = load_learner(learners[method], cpu=True)
    assert type(learn.dls.after_item.fs[0]).__name__ == "Resize" and learn.dls.after_item.fs[0].method == method
    # frames unlike the training ones too: another scene, night, another size
    unseen = FootageSpec("other", seed=99, width=400, height=224)
    frames = [render_frame(unseen, t) for t in (3.0, 31.0, 47.0)] + [render_frame(DEMO_CAMERAS[2], 11.0)]
    paths = []
    for i, bgr in enumerate(frames):
        paths.append(tmp_path / f"{i}.jpg")
        cv2.imwrite(str(paths[-1]), bgr)
    runner = ModelRunner(learn, torch.device("cpu"))
    decoder = FrameDecoder(tmp_path, threads=2)
    prepared = decoder.prepare(
        [FrameFile(i, p.name) for i, p in enumerate(paths)], {runner.preprocessor.key: runner.preprocessor}
    )
    decoder.close()
    ours = runner(prepared.inputs[runner.preprocessor.key]).probabilities.numpy()
    for i, path in enumerate(paths):
        _, _, theirs = learn.predict(path)
        np.testing.assert_allclose(ours[i], theirs.numpy(), atol=1e-4, rtol=0)


def test_a_resize_method_mismatch_would_be_caught(learners: dict[str, Path], tmp_path: Path) -> None:
    """The parity check has teeth: preprocessing with another learner's resize differs by far more than 1e-4."""
    from fastai.learner import load_learner

    crop, squish = (load_learner(learners[m], cpu=True) for m in ("crop", "squish"))
    bgr = render_frame(DEMO_CAMERAS[0], 29.0)
    cv2.imwrite(str(tmp_path / "f.jpg"), bgr)
    runner = ModelRunner(crop, torch.device("cpu"))
    wrong = ModelRunner(squish, torch.device("cpu")).preprocessor  # squish's item pipeline, crop's model
    decoder = FrameDecoder(tmp_path, threads=1)
    prepared = decoder.prepare([FrameFile(0, "f.jpg")], {wrong.key: wrong})
    decoder.close()
    mismatched = runner(prepared.inputs[wrong.key]).probabilities.numpy()[0]
    _, _, truth = crop.predict(tmp_path / "f.jpg")
    assert np.abs(mismatched - truth.numpy()).max() > 1e-4
