"""The out-of-domain score rises for frames unlike the model's training data."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from bearwatch.demo.footage import FootageSpec, render_frame
from bearwatch.demo.model import TRAIN_DIR_NAME
from bearwatch.schema import Prediction
from inference.worker import InferenceWorker, WorkerOptions
from ingest.store import FrameStore
from tests.conftest import DEMO_MODEL_TIMEOUT_S
from tests.inference.helpers import register, store_images


def _odd_frames(rng: np.random.Generator) -> dict[str, np.ndarray]:
    scene = render_frame(FootageSpec("held-out", seed=777), 5.0)
    yy, xx = np.mgrid[0:240, 0:320]
    indoor = np.dstack([(xx // 40 % 2) * 200, (yy // 40 % 2) * 180, np.full_like(xx, 90)]).astype(np.uint8)
    return {
        "black": np.zeros((240, 320, 3), np.uint8),
        "noise": rng.integers(0, 256, (240, 320, 3), dtype=np.uint8),
        "heavy blur": cv2.GaussianBlur(scene, (0, 0), 25),
        "another scene": indoor,
    }


@pytest.mark.timeout(DEMO_MODEL_TIMEOUT_S)  # an embedding worth scoring needs the trained demo model
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_ood_score_rises_for_black_noise_blur_and_another_scene(
    factory: sessionmaker[Session], tmp_path: Path, demo_model_path: Path
) -> None:
    normal = [render_frame(FootageSpec(f"held-out-{s}", seed=500 + s), t) for s in range(3) for t in (4.0, 19.0, 41.0, 52.0)]
    odd = _odd_frames(np.random.default_rng(0))
    store = FrameStore(tmp_path / "frames")
    ids = store_images(factory, store, normal + list(odd.values()))
    register(factory, demo_model_path, reference=demo_model_path.parent / TRAIN_DIR_NAME)
    worker = InferenceWorker(factory, store.root, WorkerOptions(device="cpu"))
    worker.refresh_models()
    assert worker.run_once() == len(ids)
    worker.close()
    with factory() as session:
        scores = dict(session.execute(sa.select(Prediction.frame_id, Prediction.ood_score)).all())
    normal_scores = [scores[i] for i in ids[: len(normal)]]
    odd_scores = dict(zip(odd, (scores[i] for i in ids[len(normal):]), strict=True))
    assert np.median(normal_scores) < 1.0, normal_scores  # like the reference
    for name, score in odd_scores.items():
        assert score > max(1.0, max(normal_scores)), f"{name}: {score:.2f} vs in-domain up to {max(normal_scores):.2f}"
