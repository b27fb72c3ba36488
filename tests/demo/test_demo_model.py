"""The demo model: trained once per session, loaded the fastai way, good on unseen footage."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from fastai.vision.all import load_learner

from bearwatch.demo.footage import FootageSpec, animals_at, render_frame
from bearwatch.demo.model import (
    DEMO_CLASSES,
    DEMO_MODEL_NAME,
    TRAIN_DIR_NAME,
    TRAIN_SEED_BASE,
    ensure_demo_model,
    make_training_images,
)
from tests.conftest import DEMO_MODEL_TIMEOUT_S

pytestmark = pytest.mark.timeout(DEMO_MODEL_TIMEOUT_S)  # they wait on training the demo model

# Scenes the training never renders (their seeds are below TRAIN_SEED_BASE) and that
# were not used while tuning the training settings either.
HELD_OUT = tuple(FootageSpec(f"held-out-{seed}", seed) for seed in (601, 602, 603))
SAMPLE_EVERY_S = 2.0


@pytest.fixture(scope="module")
def model_dir(demo_model_path: Path) -> Path:
    """The session's demo model (conftest), trained once by ensure_demo_model."""
    return demo_model_path.parent


def test_export_loads_with_the_demo_classes(model_dir: Path) -> None:
    learn = load_learner(model_dir / DEMO_MODEL_NAME)
    assert tuple(learn.dls.vocab) == DEMO_CLASSES


def test_training_leaves_the_model_and_its_images_only(model_dir: Path) -> None:
    assert sorted(p.name for p in model_dir.iterdir()) == sorted([DEMO_MODEL_NAME, TRAIN_DIR_NAME])
    train_dir = model_dir / TRAIN_DIR_NAME
    assert sorted(p.name for p in train_dir.iterdir()) == sorted(DEMO_CLASSES)
    counts = {cls: len(list((train_dir / cls).glob("*.jpg"))) for cls in DEMO_CLASSES}
    assert len(set(counts.values())) == 1 and counts["bear"] > 0


def test_ensure_demo_model_reuses_the_cached_file(model_dir: Path) -> None:
    path = model_dir / DEMO_MODEL_NAME
    mtime = path.stat().st_mtime_ns
    assert ensure_demo_model(model_dir) == path
    assert path.stat().st_mtime_ns == mtime


def test_training_images_are_deterministic(tmp_path: Path) -> None:
    first = make_training_images(tmp_path / "first", per_class=2, seed=5)
    again = make_training_images(tmp_path / "again", per_class=2, seed=5)
    other = make_training_images(tmp_path / "other", per_class=2, seed=6)
    names = sorted(p.relative_to(first) for p in first.rglob("*.jpg"))
    assert len(names) == 2 * len(DEMO_CLASSES)
    assert all((first / n).read_bytes() == (again / n).read_bytes() for n in names)
    assert any((first / n).read_bytes() != (other / n).read_bytes() for n in names)
    assert cv2.imread(str(first / names[0])).shape == (240, 320, 3)
    assert all(spec.seed < TRAIN_SEED_BASE for spec in HELD_OUT)


def test_tells_bears_from_the_rest_on_unseen_footage(model_dir: Path, tmp_path: Path) -> None:
    learn = load_learner(model_dir / DEMO_MODEL_NAME)
    paths, truth = [], []
    for spec in HELD_OUT:
        for t in np.arange(0.0, spec.duration_s, SAMPLE_EVERY_S):
            path = tmp_path / f"{spec.name}-{t:05.1f}.jpg"  # frames reach the model as JPEGs on disk
            assert cv2.imwrite(str(path), render_frame(spec, float(t)))
            paths.append(path)
            truth.append("bear" in animals_at(spec, float(t)))
    # learn.predict's own steps (test_dl, get_preds, the decoded class), for all frames in
    # batches rather than one dataloader per frame.
    with learn.no_bar():
        probs, _ = learn.get_preds(dl=learn.dls.test_dl(paths, num_workers=0))
    labels = [learn.dls.vocab[i] for i in probs.argmax(dim=1).tolist()]
    truth_arr, predicted_arr = np.array(truth), np.array([label == "bear" for label in labels])
    assert len(truth_arr) >= 60 and truth_arr.sum() >= 15 and (~truth_arr).sum() >= 15
    accuracy = float((truth_arr == predicted_arr).mean())
    print(f"bear vs not-bear accuracy on {len(truth_arr)} held-out frames: {accuracy:.3f}")
    assert accuracy >= 0.85
