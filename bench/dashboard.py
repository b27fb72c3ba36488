"""Dashboard query speed on a large park: 20 sites over 90 days.

    .venv/bin/python bench/dashboard.py [--frames N] [--database-url URL] [--repeats R]

Fills a database (a fresh SQLite file by default; --database-url for an EMPTY
PostgreSQL database, migrated here) with N frames spread evenly over the cameras and 90
days (image statistics, day and night), one prediction per frame (about 2% flagged,
with an out-of-domain score), ranger verdicts on the flagged frames and a 1% audit
sample, a daily drift check per site, and one site (site-07) that went manual -> limited
30 days ago and -> expanded 20 days ago with an alert per flagged frame since. Then times
each query function behind the dashboard pages (median of R runs, warm) and prints a
table with each page's total against the 1.5 s target of design.md section 7, and the
Review page's verdict round trip (a verdict, then the next queue) against 300 ms.
Bulk inserts go through SQLAlchemy Core executemany in chunks, with explicit ids so
predictions need no read-back.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bearwatch.auth import Actor
from bearwatch.db import make_engine, session_factory
from bearwatch.migrations import upgrade_to_head
from bearwatch.schema import (
    Alert,
    AlertStatus,
    Camera,
    CameraHealth,
    Decision,
    DriftEvent,
    Frame,
    FrameStatus,
    ModelRole,
    ModelVersion,
    Prediction,
    Role,
    Site,
    Stage,
    StageChange,
    User,
    Verdict,
    utcnow,
)
from bearwatch.users import list_users
from dashboard.queries.agreement import backtest_reports, model_agreement
from dashboard.queries.alert_rates import site_alert_rates
from dashboard.queries.cameras import camera_health
from dashboard.queries.drift import site_drift
from dashboard.queries.frames import latest_scored_frames, site_names
from dashboard.queries.live_wall import live_wall
from dashboard.queries.models import models_overview
from dashboard.queries.rollout import site_gate, site_rollouts
from shadow.promotion import ledger
from shadow.review_queue import review_queue
from shadow.verdicts import submit_verdict

SITES, CAMERAS_PER_SITE, DAYS, CHUNK = 20, 5, 90, 20_000
TARGET_S = 1.5
VERDICT_TARGET_S = 0.3
ROLLED_OUT = "site-07"  # limited 30 days ago, expanded 20 days ago


def fill(engine: sa.Engine, frames: int) -> None:
    now = utcnow()
    with session_factory(engine).begin() as session:
        model = ModelVersion(name="bench", path="/m.pkl", sha256="0" * 64, classes=["bear", "empty"],
                             positive_classes=["bear"], threshold=0.5, role=ModelRole.ROLLOUT)
        session.add(model)
        session.flush()
        start = now - timedelta(days=DAYS)
        for s in range(SITES):
            site = Site(name=f"site-{s:02d}", rollout_model_id=model.id, thresholds={}, stage_since=start, created_at=start)
            session.add(site)
            session.flush()
            session.add(StageChange(site_id=site.id, from_stage=None, to_stage=Stage.MANUAL, actor="bench", reason="new",
                                    model_version_id=model.id, thresholds={}, changed_at=start))
            if site.name == ROLLED_OUT:
                for back, frm, to in ((30, Stage.MANUAL, Stage.LIMITED), (20, Stage.LIMITED, Stage.EXPANDED)):
                    session.add(StageChange(site_id=site.id, from_stage=frm, to_stage=to, actor="bench", reason="gate passed",
                                            model_version_id=model.id, thresholds={}, changed_at=now - timedelta(days=back)))
                site.stage, site.stage_since = Stage.EXPANDED, now - timedelta(days=20)
            for day in range(DAYS):  # a daily drift check
                at = start + timedelta(days=day + 1)
                session.add(DriftEvent(
                    site_id=site.id, model_version_id=model.id, window_start=at - timedelta(days=1), window_end=at,
                    reference_start=start, reference_end=start + timedelta(days=7), alarm=False, detail="no drift", created_at=at,
                    metrics={m: {"statistic": 0.05 + day % 7 / 100, "p_value": 0.5, "min_effect": 0.25, "alarm": False}
                             for m in ("brightness", "sharpness", "positive_score", "embedding_mmd", "ood_share")},
                ))
            for c in range(CAMERAS_PER_SITE):
                session.add(Camera(site_id=site.id, name=f"cam-{c}", source=f"rtsp://u:pw@10.0.{s}.{c}/live",
                                   interval_s=5.0, health=CameraHealth.ONLINE, last_frame_at=now))
        for name, role in (("admin", Role.ADMIN), ("ranger", Role.RANGER), ("ranger2", Role.RANGER)):
            session.add(User(name=name, role=role))
        session.flush()
        camera_ids = list(session.scalars(sa.select(Camera.id).order_by(Camera.id)))
        camera_site = dict(session.execute(sa.select(Camera.id, Camera.site_id)).all())
        rolled_out = session.scalar(sa.select(Site.id).where(Site.name == ROLLED_OUT))
        ranger_id = session.scalar(sa.select(User.id).where(User.name == "ranger"))
        model_id = model.id
    per_camera = -(-frames // len(camera_ids))
    step = timedelta(days=DAYS) / per_camera
    start = now - timedelta(days=DAYS)
    trial_start = now - timedelta(days=30)
    frame_table, prediction_table = Frame.__table__, Prediction.__table__
    frame_rows: list[dict[str, Any]] = []
    prediction_rows: list[dict[str, Any]] = []
    decision_rows: list[dict[str, Any]] = []
    alert_rows: list[dict[str, Any]] = []

    def flush() -> None:
        with engine.begin() as conn:
            conn.execute(sa.insert(frame_table), frame_rows)
            conn.execute(sa.insert(prediction_table), prediction_rows)
            if decision_rows:
                conn.execute(sa.insert(Decision.__table__), decision_rows)
            if alert_rows:
                conn.execute(sa.insert(Alert.__table__), alert_rows)
        for rows in (frame_rows, prediction_rows, decision_rows, alert_rows):
            rows.clear()

    started = time.perf_counter()
    for i in range(frames):
        camera_id = camera_ids[i % len(camera_ids)]
        at = start + step * (i // len(camera_ids))
        score = (i * 7919 % 1000) / 1000 * 0.51 + (0.49 if i % 50 == 0 else 0.0)  # ~2% flagged
        night = at.hour >= 20 or at.hour < 6
        frame_rows.append({
            "id": i + 1, "camera_id": camera_id, "captured_at": at, "path": f"{camera_id}/{i}.jpg", "sha256": "0" * 64,
            "size_bytes": 40_000, "width": 640, "height": 480, "status": FrameStatus.SCORED,
            "brightness": (40.0 if night else 120.0) + i % 30, "contrast": 30.0, "sharpness": 200.0 + i % 100, "is_night": night,
        })
        flagged = score >= 0.5
        prediction_rows.append({
            "id": i + 1, "frame_id": i + 1, "model_version_id": model_id, "probabilities": {"bear": score, "empty": 1 - score},
            "positive_score": score, "flagged": flagged, "scored_at": at, "ood_score": (i * 31 % 100) / 80,
        })
        if flagged or i % 100 == 1:
            verdict = (Verdict.CONFIRM if i % 3 else Verdict.DISMISS) if flagged else (Verdict.MISSED if i % 1000 == 1 else Verdict.DISMISS)
            decision_rows.append({"id": i + 1, "frame_id": i + 1, "reviewer_id": ranger_id, "verdict": verdict,
                                  "decided_at": at + timedelta(seconds=30)})
        if flagged and camera_site[camera_id] == rolled_out and at >= trial_start:
            alert_rows.append({
                "id": i + 1, "site_id": rolled_out, "camera_id": camera_id, "frame_id": i + 1, "model_version_id": model_id,
                "stage": Stage.LIMITED if at < now - timedelta(days=20) else Stage.EXPANDED, "status": AlertStatus.SENT,
                "idempotency_key": f"bench-{i + 1}", "attempts": 1, "created_at": at + timedelta(seconds=5),
                "delivered_at": at + timedelta(seconds=6), "flag_count": 1, "last_flag_at": at,
            })
        if len(frame_rows) >= CHUNK:
            flush()
    if frame_rows:
        flush()
    if engine.dialect.name == "postgresql":
        with engine.begin() as conn:  # explicit ids above: move the sequences past them
            for table in ("frames", "predictions", "decisions", "alerts"):
                conn.execute(sa.text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), {frames})"))
            conn.execute(sa.text("ANALYZE"))
    else:
        with engine.begin() as conn:
            conn.execute(sa.text("ANALYZE"))
    print(f"filled {frames:,} frames + predictions in {time.perf_counter() - started:.1f}s")


def timed(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm: the first run pays for connection setup and the page cache
    runs = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - t0)
    return statistics.median(runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=1_000_000)
    parser.add_argument("--database-url", default=None, help="an empty database (default: a new SQLite file)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--keep", type=Path, default=None,
                        help="fill this new SQLite file and keep it (e.g. to run the dashboard on it)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if args.keep is not None and args.keep.exists():
            parser.error(f"{args.keep} exists; --keep wants a new file")
        url = args.database_url or f"sqlite:///{(args.keep or Path(tmp) / 'bench.db').resolve()}"
        engine = make_engine(url)
        upgrade_to_head(engine)
        fill(engine, args.frames)
        factory = session_factory(engine)
        now = utcnow()
        site = "site-07"
        admin = Actor("admin", Role.ADMIN)

        def q(fn: Callable[..., object], *a: object, **kw: object) -> Callable[[], object]:
            def run() -> object:
                with factory() as session:
                    return fn(session, *a, **kw)
            return run

        ranger = Actor("ranger", Role.RANGER)
        reviewer = Actor("ranger2", Role.RANGER)  # one who has not decided the recent frames yet
        month = (now - timedelta(days=30), now)
        reports = Path(tmp) / "reports"

        with factory() as session:  # the frames the timed verdicts go to, picked beforehand
            to_review = [i.frame_id for i in review_queue(session, reviewer, now, limit=args.repeats + 1)]

        def verdict_round_trip() -> object:
            # What one keypress on the Review page does: the verdict, then the next queue.
            submit_verdict(factory, to_review.pop(0), reviewer, Verdict.DISMISS, utcnow())
            with factory() as session:
                return review_queue(session, reviewer, utcnow())

        pages: dict[str, list[tuple[str, Callable[[], object]]]] = {
            "Review": [("site_names", q(site_names)), ("review_queue(all sites, 50)", q(review_queue, ranger, now))],
            "Review: a verdict + the next queue": [("submit_verdict + review_queue(all sites)", verdict_round_trip)],
            "Rollout": [("site_rollouts(20 sites)", q(site_rollouts, now)), ("site_gate(one manual site)", q(site_gate, "site-03", now)),
                        ("site_gate(site-07, expanded: none)", q(site_gate, ROLLED_OUT, now)), ("ledger", q(ledger))],
            "Alert rates": [("site_names", q(site_names)), ("site_alert_rates(one site, 30 d)", q(site_alert_rates, ROLLED_OUT, *month))],
            "Drift": [("site_names", q(site_names)), ("site_drift(one site, 30 d)", q(site_drift, ROLLED_OUT, *month, now))],
            "Models + agreement": [("models_overview", q(models_overview)), ("model_agreement(30 d)", q(model_agreement, *month)),
                                   ("backtest_reports", lambda: backtest_reports(reports))],
            "Live wall": [("site_names", q(site_names)), ("live_wall(one site)", q(live_wall, site, now=now))],
            "Latest frames": [("site_names", q(site_names)), ("latest_scored_frames(all)", q(latest_scored_frames)),
                              ("latest_scored_frames(one site)", q(latest_scored_frames, site=site))],
            "Cameras": [("camera_health(all)", q(camera_health, now=now))],
            "Models": [("models_overview", q(models_overview))],
            "Users": [("list_users", q(list_users, actor=admin))],
        }
        print(f"\n{engine.dialect.name}; {args.frames:,} frames, {SITES} sites x {CAMERAS_PER_SITE} cameras, "
              f"{DAYS} days; median of {args.repeats} warm runs")
        print("| page | query function | ms | page total ms | page total / target (1.5 s; verdict 0.3 s) |")
        print("|---|---|---:|---:|---:|")
        for page, queries in pages.items():
            times = [(name, timed(fn, args.repeats)) for name, fn in queries]
            total = sum(t for _, t in times)
            for i, (name, t) in enumerate(times):
                last = i == len(times) - 1
                target = VERDICT_TARGET_S if page.startswith("Review:") else TARGET_S
                print(f"| {page if i == 0 else ''} | {name} | {t * 1000:.1f} | "
                      f"{f'{total * 1000:.1f}' if last else ''} | {f'{total / target:.3f}' if last else ''} |")
        engine.dispose()


if __name__ == "__main__":
    main()
