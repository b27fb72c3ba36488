"""The History page's query (dashboard.queries.history) on a large PostgreSQL park: a page's
time and statements, newest and deep in the history, all sites / one site / one camera,
and rare filters (confirms, a label in a score band), to show that a page's work is
bounded by the page and the scan, not by the size of the history (run it at two sizes).

    .venv/bin/python -m bench.history_pages --frames 300000

Frames, predictions and decisions are filled by INSERT .. SELECT generate_series (about
a second per 100k frames); the database is dropped at the end. Prints one line per case:
median ms of 5 runs, statements that read rows, rows on the page and frames scanned."""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from datetime import timedelta
from pathlib import Path

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # bench.scratch_db, as the other benches

from bearwatch.db import make_engine, session_factory
from bearwatch.migrations import upgrade_to_head
from bearwatch.schema import Frame, ModelVersion, Role, utcnow
from bearwatch.users import add_user
from bench.scratch_db import scratch_database
from dashboard.queries.history import Cursor, HistoryFilter, VerdictFilter, history_page
from ingest.cameras import add_camera
from shadow.sites import add_site, set_rollout_model


def fill(db_url: str, frames: int, sites: int, cameras_per_site: int) -> dict[str, object]:
    engine = make_engine(db_url)
    upgrade_to_head(engine)
    factory = session_factory(engine)
    now = utcnow()
    with factory.begin() as session:
        add_user(session, "ranger", Role.RANGER, "correct horse battery")
        model = ModelVersion(name="m", path="/m.pkl", sha256="ab" * 32, classes=["bear", "deer", "empty"],
                             positive_classes=["bear"])
        session.add(model)
        session.flush()
        camera_ids = []
        for s in range(sites):
            site = add_site(session, f"site{s}", actor="bench")
            set_rollout_model(session, site, model, actor="bench", now=now - timedelta(days=400))
            camera_ids += [add_camera(session, site, f"cam{c}", "/f", interval_s=5).id for c in range(cameras_per_site)]
        model_id = model.id
    n_cams = len(camera_ids)
    start = now - timedelta(seconds=5 * frames // n_cams)
    with engine.begin() as conn:
        conn.execute(sa.text(
            "INSERT INTO frames (camera_id, captured_at, path, sha256, size_bytes, width, height, status) "
            "SELECT (:ids)[1 + i % :n], :start + make_interval(secs => 5 * (i / :n)) + make_interval(secs => (i % :n) * 0.01), "
            "'f/' || i || '.jpg', '0', 1, 160, 120, 'scored' FROM generate_series(0, :frames - 1) i"
        ), {"ids": camera_ids, "n": n_cams, "start": start.replace(tzinfo=None), "frames": frames})
        conn.execute(sa.text("DELETE FROM frame_queue"))
        conn.execute(sa.text(
            "INSERT INTO predictions (frame_id, model_version_id, probabilities, positive_score, flagged, scored_at) "
            "SELECT id, :m, json_build_object('bear', s, 'deer', CASE WHEN id % 7 = 0 THEN 0.8 ELSE 0 END, 'empty', 1 - s), "
            "s, s >= 0.5, now() FROM (SELECT id, ((id * 2654435761) % 1000) / 1000.0 AS s FROM frames) x"
        ), {"m": model_id})
        user_id = conn.scalar(sa.text("SELECT id FROM users WHERE name = 'ranger'"))
        conn.execute(sa.text(  # a verdict on every flagged frame of every 50th: ~1% of frames
            "INSERT INTO decisions (frame_id, reviewer_id, verdict, decided_at, design_derived) "
            "SELECT frame_id, :u, CASE WHEN positive_score > 0.9 THEN 'confirm' ELSE 'dismiss' END, now(), false "
            "FROM predictions WHERE flagged AND frame_id % 50 = 0"
        ), {"u": user_id})
        conn.execute(sa.text("ANALYZE"))
    return {"engine": engine, "factory": factory, "camera_ids": camera_ids}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=300_000)
    parser.add_argument("--sites", type=int, default=3)
    parser.add_argument("--cameras", type=int, default=10, help="per site")
    parser.add_argument("--pg-admin-url", default=os.environ.get(
        "BEARWATCH_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"))
    args = parser.parse_args()
    with scratch_database(args.pg_admin_url, "bearwatch_history") as database:
        db_url = database.url
        try:
            t0 = time.perf_counter()
            made = fill(db_url, args.frames, args.sites, args.cameras)
            print(f"filled {args.frames} frames in {time.perf_counter() - t0:.1f} s; load {os.getloadavg()[0]:.1f}")
            engine, factory = made["engine"], made["factory"]
            camera_ids: list[int] = made["camera_ids"]  # type: ignore[assignment]
            with factory() as session:
                oldest = session.execute(sa.select(Frame.captured_at, Frame.id).order_by(Frame.captured_at, Frame.id)
                                         .offset(1000).limit(1)).one()
            deep = Cursor(oldest[0], oldest[1])
            cases = [
                ("all sites, newest", HistoryFilter(), None),
                ("all sites, 1,000 frames from the oldest", HistoryFilter(), deep),
                ("one site, newest", HistoryFilter(site="site0"), None),
                ("one site, deep", HistoryFilter(site="site0"), deep),
                ("one camera, newest", HistoryFilter(camera_id=camera_ids[0]), None),
                ("confirmed (rare), all sites", HistoryFilter(verdict=VerdictFilter.CONFIRMED), None),
                ("label deer, score 0.3-0.6, one site", HistoryFilter(site="site1", label="deer", score_min=0.3, score_max=0.6), None),
                ("unreviewed, one camera, deep", HistoryFilter(camera_id=camera_ids[1], verdict=VerdictFilter.UNREVIEWED), deep),
            ]
            for name, flt, after in cases:
                statements: list[str] = []

                def count(_c: object, _cur: object, statement: str, *_: object, into: list[str] = statements) -> None:
                    into.append(statement)

                times = []
                for _ in range(5):
                    statements.clear()
                    sa.event.listen(engine, "before_cursor_execute", count)
                    t = time.perf_counter()
                    with factory() as session:
                        page = history_page(session, flt, after=after)
                    times.append((time.perf_counter() - t) * 1000)
                    sa.event.remove(engine, "before_cursor_execute", count)
                work = [s for s in statements if s.split()[0].upper() == "SELECT"]
                print(f"{name:42s} {statistics.median(times):7.1f} ms  {len(work)} statements  rows {len(page.rows):3d}"
                      f"  scanned {page.scanned if page.scanned is not None else '-'}")
        finally:
            engine.dispose()  # type: ignore[attr-defined]


if __name__ == "__main__":
    main()
