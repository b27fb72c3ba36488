"""The review queue and a verdict round trip on a large database (design.md 7: a verdict
round trip < 300 ms at 1M frames, 20 sites, 90 days).

    .venv/bin/python bench/review_queue.py [--frames N] [--url URL] [--rounds R]

Builds N frames (20 sites x 5 cameras, spread over 90 days), a rollout prediction for
each (1% flagged), one site in limited with its flags turned into held alerts, then
times (a) the review queue of one ranger at one site, (b) a verdict followed by the next
queue (what the dashboard does per keypress). Prints medians and the ratio to the target.
SQLite by default (a temporary file); --url for PostgreSQL.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from functools import partial
from pathlib import Path

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bearwatch.auth import Actor
from bearwatch.db import make_engine, session_factory
from bearwatch.migrations import upgrade_to_head
from bearwatch.schema import Camera, Frame, FrameStatus, ModelVersion, Prediction, Role, Site, Stage, User, Verdict
from shadow.alerts import process_new_flags
from shadow.review_queue import review_queue
from shadow.verdicts import submit_verdict

TARGET_MS = 300.0
SITES, CAMERAS = 20, 5
END = datetime(2026, 9, 1, tzinfo=timezone.utc)


def build(url: str, frames: int) -> tuple[sa.Engine, datetime]:
    engine = make_engine(url)
    upgrade_to_head(engine)
    factory = session_factory(engine)
    rng = random.Random(0)
    start = END - timedelta(days=90)
    with factory.begin() as session:
        model = ModelVersion(name="bench", path="/m.pkl", sha256="0" * 64, classes=["bear", "not_bear"], positive_classes=["bear"])
        session.add(model)
        session.flush()
        cams: list[int] = []
        for s in range(SITES):
            site = Site(name=f"site{s:02d}", stage=Stage.LIMITED if s == 0 else Stage.MANUAL, rollout_model_id=model.id,
                        trial_start=END - timedelta(days=7) if s == 0 else None, trial_end=END + timedelta(days=1) if s == 0 else None)
            session.add(site)
            session.flush()
            for c in range(CAMERAS):
                camera = Camera(site_id=site.id, name=f"c{c}", source="x.avi")
                session.add(camera)
                session.flush()
                cams.append(camera.id)
        session.add(User(name="ana", role=Role.RANGER))
        model_id = model.id
    step = timedelta(days=90) / (frames // len(cams) + 1)
    chunk = 20_000
    for lo in range(0, frames, chunk):
        with factory.begin() as session:
            rows = []
            for i in range(lo, min(lo + chunk, frames)):
                cam = cams[i % len(cams)]
                rows.append({"id": i + 1, "camera_id": cam, "captured_at": start + step * (i // len(cams)), "path": f"{cam}/{i}.jpg",
                             "sha256": "0" * 64, "size_bytes": 30_000, "width": 640, "height": 480, "status": FrameStatus.SCORED})
            session.execute(sa.insert(Frame), rows)
            preds = []
            for r in rows:
                score = rng.random() ** 8  # about 1% above 0.56
                preds.append({"frame_id": r["id"], "model_version_id": model_id, "probabilities": {"bear": score, "not_bear": 1 - score},
                              "positive_score": score, "flagged": score >= 0.56})
            session.execute(sa.insert(Prediction), preds)
    if engine.dialect.name == "postgresql":
        with engine.begin() as conn:
            conn.exec_driver_sql("SELECT setval('frames_id_seq', (SELECT max(id) FROM frames))")
            conn.exec_driver_sql("ANALYZE")
    else:
        with engine.begin() as conn:
            conn.exec_driver_sql("ANALYZE")
    process_new_flags(factory, END, max_age_s=7 * 86400.0)
    return engine, END


def timed(fn) -> float:  # type: ignore[no-untyped-def]
    t = time.perf_counter()
    fn()
    return (time.perf_counter() - t) * 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--frames", type=int, default=1_000_000)
    parser.add_argument("--url", default=None)
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = args.url or f"sqlite:///{Path(tmp) / 'bench.db'}"
        t = time.perf_counter()
        engine, now = build(url, args.frames)
        print(f"built {args.frames} frames in {time.perf_counter() - t:.0f} s ({engine.dialect.name})")
        factory = session_factory(engine)
        ana = Actor("ana", Role.RANGER)
        queue_ms, trip_ms, sizes = [], [], []
        for _ in range(args.rounds):
            with factory() as session:
                queue_ms.append(timed(lambda: sizes.append(len(review_queue(session, ana, now, site="site00")))))

        def trip(frame_id: int, verdict: Verdict) -> None:
            submit_verdict(factory, frame_id, ana, verdict, now)
            with factory() as session:
                review_queue(session, ana, now, site="site00")

        for _ in range(args.rounds):
            with factory() as session:
                item = review_queue(session, ana, now, site="site00")[0]
            verdict = Verdict.DISMISS if item.reason.value == "audit" else Verdict.CONFIRM
            trip_ms.append(timed(partial(trip, item.frame_id, verdict)))
        engine.dispose()
    print("| what | median ms | p90 ms | vs target 300 ms |")
    print("|---|---:|---:|---:|")
    for name, values in (("review queue (50 items)", queue_ms), ("verdict + next queue", trip_ms)):
        med, p90 = statistics.median(values), sorted(values)[int(len(values) * 0.9) - 1]
        print(f"| {name} | {med:.1f} | {p90:.1f} | {med / TARGET_MS:.2f}x |")
    print(f"queue sizes: {sorted(set(sizes))}")


if __name__ == "__main__":
    main()
