"""Retention on PostgreSQL's partitioned frames (issue 13 item 4): a whole partition dropped
against the same frames deleted row by row, and the bytes per camera-day of each table.

    .venv/bin/python bench/retention.py [--frames 500000] [--cameras 40] [--pg-admin-url URL]

Creates a scratch database (dropped at the end), migrates it to head (the partitioned
layout), and fills two stream partitions of --frames frames each, one frame per 5 s per
camera, as a park writes them (SQL INSERT ... SELECT on the server): each frame scored by
one model with its 512 x float16 embedding, 1% flagged in bursts and handled by the alert
processor (alert_flags), a verdict on half the flags and an alert on every tenth of them.
All of it is older than the retention window. Then:

  drop   ingest.sweeper retain's partition path on the first partition
         (bearwatch.partitions.drop_partition): evidence moved to the kept partitions, the
         rest dropped
  rows   the row-by-row path (ingest.sweeper.retain_rows, what SQLite and PostgreSQL
         before 15 do) on the second partition's frames

Each: wall and server-side figures of one run: WAL written (pg_current_wal_lsn), dead rows
left for vacuum (pg_stat_user_tables after pg_stat_force_next_flush), the database's size
before and after. The frames' JPEG files are not written (both paths delete the same ones).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bearwatch.db import make_engine, session_factory, write_transaction
from bearwatch.migrations import upgrade_to_head
from bearwatch.partitions import OPT_IN, drop_partition, remake_stream_partitions, stream_partitions
from bearwatch.schema import Camera, ModelVersion, Role, Site, Stage, User
from bench.scratch_db import scratch_database
from ingest.store import FrameStore
from ingest.sweeper import evidence_frame_ids, retain_rows

INTERVAL_S = 5.0
NOW = datetime.now(timezone.utc).replace(microsecond=0)
TABLES = ("frames", "predictions", "alert_flags", "decisions", "alerts", "frame_votes")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=500_000, help="frames in each of the two partitions")
    parser.add_argument("--cameras", type=int, default=40)
    parser.add_argument("--pg-admin-url", default=os.environ.get(
        "BEARWATCH_BENCH_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"))
    return parser.parse_args()


def setup(factory: sessionmaker[Session], frames: int, cameras: int) -> None:
    """A site, cameras, a model, a ranger; the stream partitions replaced by two of ``frames``
    ids (and one after, for the frames written from now on)."""
    with write_transaction(factory) as session:
        site = Site(name="north", stage=Stage.EXPANDED)
        session.add(site)
        session.flush()
        session.add_all([Camera(site_id=site.id, name=f"cam-{n}", source=f"rtsp://cam/{n}") for n in range(cameras)])
        session.add(ModelVersion(name="m", path="m.pkl", sha256="0" * 64, classes=["bear", "empty"], positive_classes=["bear"]))
        session.add(User(name="rita", role=Role.RANGER))
        remake_stream_partitions(session, [frames, frames, frames])


def fill(factory: sessionmaker[Session], frames: int, cameras: int, start: datetime) -> None:
    """2 x ``frames`` frames from ``start`` on, one per 5 s per camera, scored, as above."""
    for part in range(2):
        for low in range(part * frames + 1, (part + 1) * frames + 1, 100_000):
            high = min(low + 100_000, (part + 1) * frames + 1)
            with write_transaction(factory) as session:
                session.execute(sa.text(
                    "INSERT INTO frames (id, camera_id, captured_at, path, sha256, size_bytes, width, height, brightness, "
                    "contrast, sharpness, is_night, change_score, status) "
                    "SELECT n, 1 + n % :cams, CAST(:t0 AS timestamp) + make_interval(secs => (n / :cams) * :dt), "
                    "'site-1/camera-' || (1 + n % :cams) || '/' || n || '-abcdef.jpg', md5(n::text) || md5(n::text), "
                    "45000, 1280, 720, 100, 40, 30, false, 0.01, 'scored' FROM generate_series(:low, :high - 1) n"),
                    {"cams": cameras, "t0": start.replace(tzinfo=None), "dt": INTERVAL_S, "low": low, "high": high})
                # 1% flagged, in bursts of 10 frames of a camera (a bear stays a while)
                session.execute(sa.text(
                    "INSERT INTO predictions (frame_id, model_version_id, probabilities, positive_score, flagged, "
                    "ood_score, embedding, scored_at) SELECT n, 1, '{\"bear\": 0.1, \"empty\": 0.9}', "
                    "CASE WHEN (n / :cams) % 1000 < 10 THEN 0.9 ELSE 0.1 END, (n / :cams) % 1000 < 10, 0.2, "
                    "decode(repeat(md5(n::text), 64), 'hex'), now() FROM generate_series(:low, :high - 1) n"),
                    {"cams": cameras, "low": low, "high": high})
                session.execute(sa.text(
                    "INSERT INTO alert_flags (prediction_id, frame_id, site_id, stage, outcome, processed_at) "
                    "SELECT p.id, p.frame_id, 1, 'expanded', 'merged', now() FROM predictions p "
                    "WHERE p.flagged AND p.frame_id >= :low AND p.frame_id < :high"), {"low": low, "high": high})
                session.execute(sa.text(
                    "INSERT INTO decisions (frame_id, reviewer_id, verdict, decided_at, design_derived) "
                    "SELECT p.frame_id, 1, 'confirm', now(), false FROM predictions p "
                    "WHERE p.flagged AND p.frame_id >= :low AND p.frame_id < :high AND p.frame_id % 2 = 0"),
                    {"low": low, "high": high})
                session.execute(sa.text(
                    "INSERT INTO alerts (site_id, camera_id, frame_id, model_version_id, stage, status, idempotency_key, "
                    "attempts, created_at, source, flag_count, last_flag_at) "
                    "SELECT 1, f.camera_id, f.id, 1, 'expanded', 'sent', 'k' || f.id, 1, now(), 'model', 1, f.captured_at "
                    "FROM predictions p JOIN frames f ON f.id = p.frame_id "
                    "WHERE p.flagged AND p.frame_id >= :low AND p.frame_id < :high AND p.frame_id % 10 = 1"),
                    {"low": low, "high": high})
    with factory() as session:
        session.execute(sa.text("SELECT setval('frames_id_seq', :v, false)"), {"v": 2 * frames + 1})
        session.commit()
    engine = factory.kw["bind"]
    with engine.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT").execute(sa.text("VACUUM (ANALYZE)"))


def sizes(factory: sessionmaker[Session]) -> dict[str, int]:
    with factory() as session:
        return {str(name): int(size) for name, size in session.execute(sa.text(
            "SELECT coalesce(pg_partition_root(oid), oid)::regclass::text, sum(pg_total_relation_size(oid)) "
            "FROM pg_class WHERE relkind = 'r' AND relnamespace = 'public'::regnamespace GROUP BY 1"))}


def server_state(factory: sessionmaker[Session]) -> tuple[int, int, int]:
    """(WAL position in bytes, dead rows of all tables, database size)."""
    with factory() as session:
        session.execute(sa.text("SELECT pg_stat_force_next_flush()"))
        session.commit()
    time.sleep(1.0)  # the statistics of the sessions just ended
    with factory() as session:
        wal = session.scalar(sa.text("SELECT pg_current_wal_lsn() - '0/0'"))
        dead = session.scalar(sa.text("SELECT sum(n_dead_tup) FROM pg_stat_user_tables"))
        size = session.scalar(sa.text("SELECT pg_database_size(current_database())"))
    return int(wal or 0), int(dead or 0), int(size or 0)


def measure(name: str, factory: sessionmaker[Session], run: object) -> None:
    assert callable(run)
    wal0, dead0, size0 = server_state(factory)
    start, cpu = time.perf_counter(), time.thread_time()
    result = run()
    wall, cpu = time.perf_counter() - start, time.thread_time() - cpu
    wal1, dead1, size1 = server_state(factory)
    print(f"| {name} | {result} | {wall:.1f} s | {cpu:.1f} s | {(wal1 - wal0) / 1e3:,.0f} kB | {dead1 - dead0:,} | "
          f"{size0 / 1e6:,.0f} -> {size1 / 1e6:,.0f} MB |", flush=True)


def main() -> None:
    args = parse_args()
    with scratch_database(args.pg_admin_url, "bearwatch_retention") as database:
        engine = make_engine(database.url)
        try:
            os.environ[OPT_IN] = "1"  # the partitioned layout (not the default yet)
            upgrade_to_head(engine)
            factory = session_factory(engine)
            setup(factory, args.frames, args.cameras)
            span_s = args.frames / args.cameras * INTERVAL_S
            start = NOW - timedelta(days=60)
            t0 = time.perf_counter()
            fill(factory, args.frames, args.cameras, start)
            print(f"retention bench: 2 x {args.frames:,} frames of {args.cameras} cameras "
                  f"({span_s / 86400:.1f} days each), filled in {time.perf_counter() - t0:.0f} s; "
                  f"load average {os.getloadavg()[0]:.2f}\n")
            camera_days = 2 * args.frames * INTERVAL_S / 86400
            print("| table | MB | MB per camera-day |\n|---|---:|---:|")
            for table, nbytes in sorted(sizes(factory).items(), key=lambda kv: -kv[1]):
                if table in TABLES:
                    print(f"| {table} | {nbytes / 1e6:,.1f} | {nbytes / 1e6 / camera_days:.3g} |")
            with factory() as session:
                evidence = evidence_frame_ids(session)
                first = stream_partitions(session)[1]
            store = FrameStore(Path("/nonexistent-bearwatch-bench-store"))
            print("\n| path | frames deleted (kept) | wall | bench CPU | WAL | dead rows | database |\n"
                  "|---|---:|---:|---:|---:|---:|---:|")

            def by_partition() -> str:
                gone = drop_partition(factory, first, evidence)
                return f"{gone.frames:,} ({len(gone.kept):,})"

            def by_rows() -> str:
                report = retain_rows(factory, store, NOW - timedelta(days=1), evidence, only_default=False)
                return f"{report.frames_deleted:,} ({report.kept_as_evidence:,})"

            measure("partition dropped", factory, by_partition)
            measure("rows deleted", factory, by_rows)
            print(f"\n(load average {os.getloadavg()[0]:.2f})")
        finally:
            engine.dispose()


if __name__ == "__main__":
    main()
