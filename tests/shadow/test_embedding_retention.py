"""Embeddings past the retention window are thinned to what drift samples (issue 13 item
4), on SQLite and PostgreSQL: recent predictions keep theirs, older ones keep theirs only
in the kept share of drift's hash order, so drift's MMD sample of an old window is what it
was; each pass reads only what inference scored since the last."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from bearwatch.schema import Frame, FrameStatus, Prediction
from shadow import drift_sampling, drift_windows
from shadow.drift_sampling import WindowSpec
from shadow.drift_windows import read_windows
from shadow.embedding_retention import keep_threshold, thin_embeddings
from tests.shadow.helpers import T0, Park, make_park

EVERY = timedelta(minutes=1)
DAYS = 4
KEEP = 0.25


def _embedding(frame_id: int, model: int) -> bytes:
    return np.full(512, (frame_id * 7 + model) % 1000, np.float16).tobytes()


def _fill(factory: sessionmaker[Session], park: Park, *, days: float = DAYS, start_id: int = 1,
          start: timedelta = timedelta(0)) -> int:
    """The park's two cameras, a frame a minute for ``days`` from T0 + ``start``, each scored
    by the rollout model and the challenger with an embedding. Returns the number of frames."""
    frames, predictions = [], []
    n = int(days * 24 * 60)
    for i in range(n):
        for c, camera_id in enumerate(park.cameras):
            frame_id = start_id + 2 * i + c
            at = T0 + start + i * EVERY + timedelta(seconds=c)
            frames.append({"id": frame_id, "camera_id": camera_id, "captured_at": at, "path": f"{frame_id}.jpg",
                           "sha256": f"{frame_id:064d}", "size_bytes": 1000, "width": 64, "height": 48,
                           "brightness": 100.0 + frame_id % 50, "contrast": 30.0, "sharpness": 10.0,
                           "is_night": i % 3 == 0, "status": FrameStatus.SCORED})
            for model in (park.model_id, park.challenger_id):
                score = (frame_id % 89) / 100
                predictions.append({"frame_id": frame_id, "model_version_id": model,
                                    "probabilities": {"bear": score, "not_bear": 1 - score}, "positive_score": score,
                                    "flagged": score >= 0.5, "ood_score": 0.1, "embedding": _embedding(frame_id, model),
                                    "scored_at": at + timedelta(seconds=2)})
    with factory.begin() as session:
        session.execute(sa.insert(Frame), frames)
        session.execute(sa.insert(Prediction), predictions)
    return 2 * n


def _state(factory: sessionmaker[Session], site_id: int) -> list[tuple[int, Any, bool, bool]]:
    """(frame id, captured_at, rank below the kept share, has its embedding) per prediction."""
    rank = drift_sampling.sample_rank(Frame.id, sa.literal(site_id, sa.BigInteger))
    with factory() as session:
        return [tuple(r) for r in session.execute(  # type: ignore[misc]
            sa.select(Frame.id, Frame.captured_at, rank < keep_threshold(KEEP), Prediction.embedding.is_not(None))
            .join(Prediction, Prediction.frame_id == Frame.id).order_by(Prediction.id))]


def _mmd_sample(factory: sessionmaker[Session], park: Park, day: int) -> list[bytes]:
    drift_windows.clear_cache()
    spec = WindowSpec(park.site_id, park.model_id, T0 + timedelta(days=day), T0 + timedelta(days=day + 1), seed=park.site_id)
    with factory() as session:
        window = read_windows(session, [spec], sample_embeddings=200)[0]
    return [e.tobytes() for e in window.embeddings]


def test_old_embeddings_thinned_to_drifts_sample_and_passes_read_only_the_new(factory: sessionmaker[Session]) -> None:
    park = make_park(factory)
    _fill(factory, park)
    now = T0 + timedelta(days=DAYS)
    before = _mmd_sample(factory, park, day=0)
    assert len(before) >= 190  # proportional allocation floors each stratum's share

    report = thin_embeddings(factory, days=2, now=now, keep_fraction=KEEP, batch=1000)

    cutoff = now - timedelta(days=2)
    state = _state(factory, park.site_id)
    old = [s for s in state if s[1] < cutoff]
    young = [s for s in state if s[1] >= cutoff]
    assert all(has for *_, has in young), "a prediction of the last 2 days lost its embedding"
    assert all(has == kept for _, _, kept, has in old), "an old embedding was kept or thinned against the hash rule"
    assert 0.2 < sum(has for *_, has in old) / len(old) < 0.3  # about the kept share
    assert report.thinned == sum(not has for *_, has in old)
    assert report.seen == len(old)
    # drift's MMD sample of an old window (a site's reference) is what it was
    assert _mmd_sample(factory, park, day=0) == before

    again = thin_embeddings(factory, days=2, now=now, keep_fraction=KEEP, batch=1000)
    assert (again.seen, again.thinned) == (0, 0), "a second pass walked the history again"

    # A day later: the pass walks that day's predictions only.
    later = thin_embeddings(factory, days=2, now=now + timedelta(days=1), keep_fraction=KEEP, batch=1000)
    day_three = [s for s in state if cutoff <= s[1] < cutoff + timedelta(days=1)]
    assert later.seen == len(day_three)
    assert later.thinned == sum(not kept for _, _, kept, _ in day_three)


def test_a_pass_stops_at_the_first_young_prediction(factory: sessionmaker[Session]) -> None:
    """Predictions are walked in id order, and ids follow scoring, not capture: a young
    frame scored before old ones (a backlog) holds the cursor until it is old too."""
    park = make_park(factory)
    n = _fill(factory, park, days=0.25)  # 6 hours from T0
    now = T0 + timedelta(days=3)  # every frame of the fills is older than 2 days
    with factory.begin() as session:  # a frame of "now" scored before a backlog
        young = Frame(id=n + 50, camera_id=park.cameras[0], captured_at=now, path="young.jpg", sha256="f" * 64, size_bytes=1,
                      width=64, height=48, status=FrameStatus.SCORED)
        session.add(young)
        session.flush()
        session.add(Prediction(frame_id=young.id, model_version_id=park.model_id, probabilities={"bear": 0.1},
                               positive_score=0.1, flagged=False, embedding=_embedding(young.id, 0)))
    # the backlog: scored after it, captured 6 to 12 hours after T0
    _fill(factory, park, days=0.25, start_id=n + 100, start=timedelta(hours=6))
    report = thin_embeddings(factory, days=2, now=now, keep_fraction=KEEP, batch=400)
    assert report.seen == 2 * n  # the first fill, both models: not past the young one
    state = _state(factory, park.site_id)
    assert all(has for fid, _, _, has in state if fid >= n + 100), "thinned past a prediction younger than the cutoff"


def test_refuses_to_thin_drifts_current_window(factory: sessionmaker[Session]) -> None:
    with pytest.raises(ValueError, match="at least 2 days"):
        thin_embeddings(factory, days=1, now=T0)
