"""Scoring a decoded batch with every active model: the predictions to commit, as columns
(inference.queue.ModelScores, made with array operations, not frame by frame), and the
heat maps of flagged frames. The worker's loop (inference.worker) claims, decodes and
commits around it."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch
from sqlalchemy.orm import Session, sessionmaker

from bearwatch.errors import BearwatchError
from inference import metrics
from inference.decode import PreparedBatch
from inference.heatmap import HEATMAP_FAILURES, GradCam, HeatmapRow, gradcam_for, heatmap_rows
from inference.queue import ModelScores
from inference.registry import LoadedModel, active_versions, load_model
from inference.runner import BatchOutput, ModelRunner

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ActiveModel:
    info: LoadedModel
    runner: ModelRunner
    gradcam: GradCam | None = None  # heat maps of its flagged frames (inference.heatmap)


def load_active_models(factory: sessionmaker[Session], device: torch.device) -> list[ActiveModel]:
    """Every active model, ready on ``device``; one that fails to load is logged, counted
    and skipped, so the others keep scoring."""
    with factory() as session:
        versions = active_versions(session)
        for v in versions:
            _ = v.ood_reference  # deferred column: load it while the session is open
    models = []
    for version in versions:
        try:
            info = load_model(version)
            runner = ModelRunner(info.learner, device, info.reference)
            models.append(ActiveModel(info, runner, gradcam_for(runner.model, info.name)))
        except BearwatchError as exc:
            metrics.SCORING_FAILURES.labels("model_load").inc()
            log.error("not scoring with this model: %s", exc)
    return models


def score_prepared(
    models: list[ActiveModel], prepared: PreparedBatch, heatmaps: list[HeatmapRow] | None = None
) -> list[ModelScores]:
    """Every frame's prediction by every model, one :class:`ModelScores` per model. With a
    ``heatmaps`` list, the heat map of each flagged prediction is added to it; one that
    cannot be made is logged and counted, and the predictions are the same either way."""
    if not prepared.frame_ids:
        return []
    frame_ids = np.fromiter(prepared.frame_ids, np.int64, len(prepared.frame_ids))
    scored = []
    for model in models:
        out = model.runner(prepared.inputs[model.runner.preprocessor.key])
        info = model.info
        scores = model_scores(info, frame_ids, out)
        scored.append(scores)
        metrics.FRAMES_SCORED.labels(info.name).inc(len(frame_ids))
        if model.gradcam is not None:
            if heatmaps is not None:
                flagged = np.flatnonzero(scores.flagged).tolist()
                heatmaps.extend(_heatmaps(model.gradcam, info, prepared.frame_ids, flagged, _positive_indices(info)))
            model.gradcam.forget()
    return scored


def model_scores(info: LoadedModel, frame_ids: npt.NDArray[np.int64], out: BatchOutput) -> ModelScores:
    """One model's outputs for a batch as the columns to store, with array operations."""
    probabilities = out.probabilities.numpy()
    exact = probabilities.astype(np.float64)
    score = np.zeros(len(frame_ids))
    for j in _positive_indices(info):  # class by class, in order: the same sums as Python's sum() per row
        score += exact[:, j]
    return ModelScores(
        model_version_id=info.version_id, classes=info.classes, frame_ids=frame_ids, probabilities=probabilities,
        positive_score=score, flagged=score >= info.threshold,
        ood_score=out.ood.numpy() if out.ood is not None else None,
        # float16: drift statistics need no more precision (shadow.drift_windows reads it so).
        # torch rounds as numpy's astype does (bit for bit), several times faster.
        embeddings=out.embeddings.to(torch.float16).numpy() if out.embeddings is not None else None,
    )


def _positive_indices(info: LoadedModel) -> list[int]:
    return [info.classes.index(c) for c in info.positive_classes]


def _heatmaps(gradcam: GradCam, info: LoadedModel, frame_ids: Sequence[int], flagged: list[int],
              positive_idx: list[int]) -> list[HeatmapRow]:
    if not flagged:
        return []
    try:
        return heatmap_rows(gradcam, frame_ids, flagged, positive_idx, info.version_id)
    except Exception as exc:  # a heat map is context for rangers: never worth a prediction
        HEATMAP_FAILURES.labels("compute").inc(len(flagged))
        log.warning("no heat maps for %d flagged frame(s) of model %s: %s", len(flagged), info.name, exc, exc_info=True)
        return []
