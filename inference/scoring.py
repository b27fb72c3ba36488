"""Scoring a decoded batch with every active model: the rows to commit and the heat maps
of flagged frames. The worker's loop (inference.worker) claims, decodes and commits around it."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from sqlalchemy.orm import Session, sessionmaker

from bearwatch.errors import BearwatchError
from inference import metrics
from inference.decode import PreparedBatch
from inference.heatmap import HEATMAP_FAILURES, GradCam, HeatmapRow, gradcam_for, heatmap_rows
from inference.queue import ScoreRow
from inference.registry import LoadedModel, active_versions, load_model
from inference.runner import ModelRunner, embedding_bytes

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
) -> list[ScoreRow]:
    """Every frame's prediction by every model. With a ``heatmaps`` list, the heat map of
    each flagged prediction is added to it; one that cannot be made is logged and counted,
    and the predictions are the same either way."""
    rows: list[ScoreRow] = []
    if not prepared.frame_ids:
        return rows
    for model in models:
        out = model.runner(prepared.inputs[model.runner.preprocessor.key])
        info = model.info
        positive_idx = [info.classes.index(c) for c in info.positive_classes]
        probs = out.probabilities.tolist()
        for i, frame_id in enumerate(prepared.frame_ids):
            by_class = dict(zip(info.classes, probs[i], strict=True))
            score = float(sum(probs[i][j] for j in positive_idx))
            rows.append(
                ScoreRow(
                    frame_id=frame_id, model_version_id=info.version_id, probabilities=by_class,
                    positive_score=score, flagged=score >= info.threshold,
                    ood_score=float(out.ood[i]) if out.ood is not None else None,
                    embedding=embedding_bytes(out.embeddings[i]) if out.embeddings is not None else None,
                )
            )
        metrics.FRAMES_SCORED.labels(info.name).inc(len(prepared.frame_ids))
        if model.gradcam is not None:
            if heatmaps is not None:
                flagged = [i for i, r in enumerate(rows[-len(prepared.frame_ids):]) if r.flagged]
                heatmaps.extend(_heatmaps(model.gradcam, info, prepared.frame_ids, flagged, positive_idx))
            model.gradcam.forget()
    return rows


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
