"""The Review page's frame context (dashboard.queries.frame_context) on a large camera history.

    .venv/bin/python bench/frame_context.py [--frames N] [--rounds R] [--database-url URL]

One site with a rollout model and two cameras, each with N frames 5 s apart and a
prediction for each (1% flagged, with a heat map). Times, for R frames picked across the
history, frame_context (the strip of 3+1+3 frames, the hour of scores: 720 points, the
heat map) against a peer in the same process: latest_scored_frames of one camera (the
Latest frames page's read, 24 rows). Prints medians and the ratio, and the load average.
A temporary SQLite file unless --database-url names an empty database (it is migrated).
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bearwatch.db import make_engine, session_factory
from bearwatch.migrations import upgrade_to_head
from bearwatch.schema import Frame, FrameStatus, ModelVersion, Prediction, PredictionHeatmap, utcnow
from dashboard.queries.frame_context import frame_context
from dashboard.queries.frames import latest_scored_frames
from ingest.cameras import add_camera
from shadow.sites import add_site, set_rollout_model


def _median_ms(fn: Callable[[], object], rounds: int) -> float:
    fn()
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=100_000, help="per camera")
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--database-url")
    args = parser.parse_args()
    tmp = tempfile.TemporaryDirectory()
    url = args.database_url or f"sqlite:///{tmp.name}/bench.db"
    engine = make_engine(url)
    upgrade_to_head(engine)
    factory = session_factory(engine)
    now = utcnow()
    start = now - timedelta(seconds=5 * args.frames)
    with factory.begin() as session:
        model = ModelVersion(name="bench", path="/m.pkl", sha256="0" * 64, classes=["bear", "empty"],
                             positive_classes=["bear"], threshold=0.5)
        session.add(model)
        session.flush()
        site = add_site(session, "bench", actor="bench")
        set_rollout_model(session, site, model, actor="bench", now=now)
        cameras = [add_camera(session, site, f"cam{i}", "x.avi", interval_s=5).id for i in range(2)]
        model_id = model.id
    built = time.perf_counter()
    rng = random.Random(0)
    chunk = 20_000
    for camera_id in cameras:
        for first in range(0, args.frames, chunk):
            n = min(chunk, args.frames - first)
            with factory.begin() as session:
                rows = [dict(camera_id=camera_id, captured_at=start + timedelta(seconds=5 * (first + i)),
                             path=f"{camera_id}/{first + i}.jpg", sha256="0" * 64, size_bytes=1, width=1, height=1,
                             status=FrameStatus.SCORED) for i in range(n)]
                ids = session.scalars(sa.insert(Frame).returning(Frame.id), rows).all()
                scores = [rng.random() ** 8 for _ in ids]
                session.execute(sa.insert(Prediction), [
                    dict(frame_id=i, model_version_id=model_id, probabilities={"bear": s, "empty": 1 - s},
                         positive_score=s, flagged=s >= 0.5) for i, s in zip(ids, scores, strict=True)])
                flagged = session.scalars(sa.select(Prediction.id).where(Prediction.frame_id.in_(ids), Prediction.flagged)).all()
                if flagged:
                    session.execute(sa.insert(PredictionHeatmap), [
                        dict(prediction_id=p, method="grad-cam", grid_rows=7, grid_cols=7, cells=bytes(49)) for p in flagged])
    print(f"built {2 * args.frames} frames in {time.perf_counter() - built:.0f} s on {engine.dialect.name}")
    with factory() as session:
        picks = session.scalars(sa.select(Frame.id).where(Frame.camera_id == cameras[0])).all()
    picks = [picks[len(picks) * k // args.rounds] for k in range(args.rounds)] + [picks[-1]]
    samples = iter(picks * 3)

    def context() -> object:
        with factory() as session:
            ctx = frame_context(session, next(samples), now)
        assert ctx is not None and len(ctx.neighbours) >= 4
        return ctx

    def peer() -> object:
        with factory() as session:
            return latest_scored_frames(session, 24, camera_id=cameras[0])

    a = _median_ms(context, args.rounds)
    b = _median_ms(peer, args.rounds)
    with factory() as session:
        newest = frame_context(session, picks[-1], now)
    assert newest is not None
    print(f"load: {os.getloadavg()[0]:.1f} (1-min load average, {os.cpu_count()} CPUs); medians of {args.rounds}")
    print(f"frame_context:                     {a:7.1f} ms  (newest frame: {len(newest.history)} score points)")
    print(f"peer latest_scored_frames(camera): {b:7.1f} ms  ratio {a / b:.2f}")
    engine.dispose()
    tmp.cleanup()


if __name__ == "__main__":
    main()
