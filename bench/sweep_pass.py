"""One pass of the shadow loop's rolling frame-store sweep (ingest.sweeper.sweep with a
SweepCursor) at growing history, on PostgreSQL (issue 13: per-pass work independent of history).

    .venv/bin/python bench/sweep_pass.py [--sizes 1000000,10000000] [--cameras 100] [--days 30]

Creates a scratch database (dropped at the end), migrates it and fills frames in bulk with
INSERT ... SELECT generate_series: --cameras cameras, one frame every few seconds each over
--days days at the largest size (the smaller ones are its first days), in id order by
capture time (as ingest writes them). The files of the first
ROWS_PER_PASS rows are written (empty files; the pass stats them, it does not read them),
so the measured pass finds nothing to remove: the steady state, a store in step with its
rows. Each measured pass starts from a fresh cursor: the first rows and the first
camera-day folders, the same share at every size. Printed per size: wall and thread CPU
of the pass (median of --passes), statements, and the slowest statement under EXPLAIN
(ANALYZE, BUFFERS): rows read and buffers.
"""

from __future__ import annotations

import argparse
import functools
import os
import shutil
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

import psycopg
from sqlalchemy.orm import Session, sessionmaker

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # bench.season, as the other benches

from bearwatch.db import make_engine, session_factory
from bearwatch.migrations import upgrade_to_head
from bench.scratch_db import ScratchDatabase, scratch_database
from bench.season import measure
from ingest.cameras import add_camera
from ingest.store import FrameStore
from ingest.sweeper import ROWS_PER_PASS, SweepCursor, sweep
from shadow.sites import add_site

START = datetime(2026, 6, 1, tzinfo=timezone.utc)


def fill(conninfo: str, cameras: list[int], site_id: int, frames_from: int, frames_to: int, every_s: float) -> None:
    """Capture slots [frames_from, frames_to): a frame of each camera in turn every
    ``every_s``; path as FrameStore.relative_path names it."""
    step = 1_000_000
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute("SET TIME ZONE 'UTC'")  # to_char of the day folder, as ingest names it in UTC
        for lo in range(frames_from, frames_to, step):
            hi = min(frames_to, lo + step)
            conn.execute(
                """
                INSERT INTO frames (camera_id, captured_at, path, sha256, size_bytes, width, height, status)
                SELECT cam, at,
                       format('site-%%s/camera-%%s/%%s/%%s-%%s.jpg', %(site)s, cam, to_char(at, 'YYYY-MM-DD'),
                              to_char(at, 'HH24MISS_US'), i),
                       repeat('0', 64), 1, 1, 1, 'scored'
                FROM (SELECT i, (%(cameras)s::int[])[1 + i %% %(n)s] AS cam,
                             %(start)s::timestamptz + make_interval(secs => (i / %(n)s) * %(every)s) AS at
                      FROM generate_series(%(lo)s::bigint, %(hi)s::bigint - 1) AS i) AS slots
                ORDER BY at, cam
                """,
                {"site": site_id, "cameras": cameras, "n": len(cameras), "start": START, "every": every_s,
                 "lo": lo, "hi": hi},
            )
        conn.execute("VACUUM (ANALYZE) frames")


def write_first_files(conninfo: str, store: FrameStore, rows: int) -> None:
    """Empty files for the first ``rows`` frames: the rows the measured pass checks."""
    with psycopg.connect(conninfo) as conn:
        for (path,) in conn.execute("SELECT path FROM frames ORDER BY id LIMIT %s", (rows,)):
            file = store.absolute(path)
            file.parent.mkdir(parents=True, exist_ok=True)
            file.touch()


def _restart(cursor: SweepCursor) -> None:
    cursor.after_frame_id, cursor.after_folder = 0, ""  # the first share again, as at every size


def _one_pass(factory: sessionmaker[Session], store: FrameStore, cursor: SweepCursor) -> str:
    report = sweep(factory, store, now=datetime.now(timezone.utc), grace_s=0.0, cursor=cursor)
    return f"removed {report.rows_removed} rows, {report.files_removed} files"


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--sizes", default="1000000,10000000", help="frames to fill to and measure at, ascending")
    parser.add_argument("--cameras", type=int, default=100)
    parser.add_argument("--days", type=float, default=30.0)
    parser.add_argument("--passes", type=int, default=3)
    parser.add_argument("--pg-admin-url", default=os.environ.get(
        "BEARWATCH_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"))
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    folder = Path(tempfile.mkdtemp(prefix="bearwatch-sweep-"))
    try:
        with scratch_database(args.pg_admin_url, "bearwatch_sweep") as database:
            _run(database, folder, sizes, args)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _run(database: ScratchDatabase, folder: Path, sizes: list[int], args: argparse.Namespace) -> None:
    conninfo = database.conninfo
    engine = make_engine(database.url)
    try:
        upgrade_to_head(engine)
        factory = session_factory(engine)
        with factory.begin() as session:
            site = add_site(session, "bench", actor="bench")
            cameras = [add_camera(session, site, f"cam{i}", f"rtsp://10.0.0.{i % 250}/live{i}",
                                  interval_s=5.0).id
                       for i in range(args.cameras)]
            site_id = site.id
        store = FrameStore(folder / "frames")
        print(f"rolling sweep pass: {ROWS_PER_PASS:,} rows and folders up to as many files; {args.cameras} cameras "
              f"over {args.days:g} days; load {os.getloadavg()[0]:.1f} at start")
        done, every_s = 0, args.days * 86400 / (sizes[-1] / args.cameras)  # the largest size spans --days
        for size in sizes:
            fill(conninfo, cameras, site_id, done, size, every_s)
            if done == 0:
                write_first_files(conninfo, store, ROWS_PER_PASS)
            done = size
            cursor = SweepCursor()
            figure = measure(engine, "sweep pass", functools.partial(_one_pass, factory, store, cursor), args.passes,
                             budget_s=600, setup=functools.partial(_restart, cursor))
            plan = figure.plan
            print(f"{size:>11,} frames: wall {figure.wall_ms:8.0f} ms  cpu {figure.cpu_ms:8.0f} ms  "
                  f"statements {figure.statements}  db {figure.db_ms:6.0f} ms  ({figure.note}); slowest: "
                  + (f"{plan.ms:.1f} ms, {plan.rows_read:,} rows read, {plan.buffers:,} buffers" if plan else "-")
                  + f"; load {os.getloadavg()[0]:.1f}")
    finally:
        engine.dispose()


if __name__ == "__main__":
    main()
