"""Scoring decoded frames with loaded models.

Each frame is decoded once and every active model scores it. This first version runs
fastai's own batched path (``test_dl`` + ``get_preds``), so its answers are the
exported learner's by construction.
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from inference.queue import ClaimedFrame, ScoreRow
from inference.registry import LoadedModel


def decode_frames(root: Path, frames: tuple[ClaimedFrame, ...]) -> tuple[list[tuple[int, Image.Image]], dict[int, str]]:
    """Decode each JPEG once; frames that cannot be read come back as errors."""
    images: list[tuple[int, Image.Image]] = []
    errors: dict[int, str] = {}
    for frame in frames:
        try:
            with Image.open(root / frame.path) as im:
                images.append((frame.frame_id, im.convert("RGB")))
        except Exception as exc:  # noqa: BLE001 - any decode failure marks that frame only
            errors[frame.frame_id] = f"cannot decode {frame.path}: {type(exc).__name__}: {exc}"
    return images, errors


def score_images(model: LoadedModel, images: list[tuple[int, Image.Image]]) -> list[ScoreRow]:
    if not images:
        return []
    from fastai.vision.core import PILImage

    learn = model.learner
    dl = learn.dls.test_dl([PILImage(im) for _, im in images], num_workers=0)
    with learn.no_bar(), learn.no_logging():
        probs, _ = learn.get_preds(dl=dl)
    rows = []
    for (frame_id, _), p in zip(images, probs.tolist(), strict=True):
        by_class = dict(zip(model.classes, p, strict=True))
        score = sum(by_class[c] for c in model.positive_classes)
        rows.append(
            ScoreRow(
                frame_id=frame_id, model_version_id=model.version_id, probabilities=by_class,
                positive_score=score, flagged=score >= model.threshold,
            )
        )
    return rows
