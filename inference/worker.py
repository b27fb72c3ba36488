"""The inference worker loop: claim a batch, decode once, score with every model, commit."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from bearwatch.errors import ModelError
from inference.queue import claim_batch, commit_results, release
from inference.registry import LoadedModel, active_versions, load_model
from inference.scoring import decode_frames, score_images

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WorkerOptions:
    batch_size: int = 32
    lease_s: float = 60.0
    max_attempts: int = 3
    idle_wait_s: float = 0.5


def load_active_models(factory: sessionmaker[Session]) -> list[LoadedModel]:
    """Load every active model; one that fails to load is logged and skipped."""
    with factory() as session:
        versions = active_versions(session)
    models = []
    for version in versions:
        try:
            models.append(load_model(version))
        except ModelError as exc:
            log.error("not scoring with this model: %s", exc)
    return models


def score_one_batch(
    factory: sessionmaker[Session], frames_root: Path, models: list[LoadedModel], options: WorkerOptions
) -> int:
    """Claim and score one batch; returns how many frames it committed."""
    claim = claim_batch(factory, options.batch_size, options.lease_s)
    if not claim.frames:
        return 0
    try:
        images, failed = decode_frames(frames_root, claim.frames)
        rows = [row for model in models for row in score_images(model, images)]
    except BaseException:
        release(factory, claim)
        raise
    return commit_results(factory, claim, rows, failed, options.max_attempts)


def run_worker(
    factory: sessionmaker[Session], frames_root: Path, options: WorkerOptions, stop: threading.Event
) -> None:
    models = load_active_models(factory)
    loaded_ids = {m.version_id for m in models}
    while not stop.is_set():
        with factory() as session:
            wanted = {v.id for v in active_versions(session)}
        if wanted != loaded_ids:  # a model was registered or retired meanwhile
            models = load_active_models(factory)
            loaded_ids = wanted
        if not models:
            stop.wait(options.idle_wait_s * 4)
            continue
        started = time.monotonic()
        done = score_one_batch(factory, frames_root, models, options)
        if done:
            log.info("scored %d frames in %.2fs", done, time.monotonic() - started)
        else:
            stop.wait(options.idle_wait_s)
