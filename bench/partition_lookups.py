"""What day partitions cost a lookup by id (migration 0019, issue 13 item 4).

A frame is found by id everywhere (verdicts, alerts, the queue's joins), and the id is not
the partition key: PostgreSQL probes the id index of every partition. This fills 100,000
frames over 31 days into a database at 0018 (plain tables) and one at head (a partition per
day, plus kept and default) and prints, from EXPLAIN (ANALYZE, BUFFERS), the buffers, the
execution and the planning time of one frame by id and of a join of 1,000 ids. Buffers do
not depend on the machine's load; the times do (say the load when you quote them).

    .venv/bin/python bench/partition_lookups.py [--pg-admin-url postgresql://postgres@127.0.0.1:5432/postgres]
"""

from __future__ import annotations

import argparse
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
from alembic import command

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repo's packages, not bench/ingest.py

from bearwatch.db import make_engine, session_factory
from bearwatch.migrations import alembic_config
from bearwatch.schema import Camera, Site

QUERIES = [
    ("one frame by id", "SELECT * FROM frames WHERE id = 5000"),
    ("1,000 frames by id (join)",
     "SELECT f.* FROM frames f JOIN (SELECT (i * 97)::bigint AS id FROM generate_series(1, 1000) i) x ON f.id = x.id"),
]


def _walk(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from _walk(child)


def measure(admin: str, revision: str) -> None:
    name = f"bench_partitions_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    engine = make_engine(f"postgresql+psycopg://{admin.split('://', 1)[1].rsplit('/', 1)[0]}/{name}")
    try:
        cfg = alembic_config()
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, revision)
        with session_factory(engine).begin() as session:
            site = Site(name="s")
            session.add(site)
            session.flush()
            camera = Camera(site_id=site.id, name="c", source="x")
            session.add(camera)
            session.flush()
            camera_id = camera.id
        with engine.begin() as conn:
            if revision == "head":
                for day in range(31):
                    conn.exec_driver_sql(f"SELECT bearwatch_partitions.ensure_day(date '2026-11-30' - {day})")
            conn.exec_driver_sql(
                "INSERT INTO frames (camera_id, captured_at, path, sha256, size_bytes, width, height, status) "
                f"SELECT {camera_id}, timestamp '2026-11-30 23:59' - i * interval '26 seconds', 'p' || i, 'x', 1, 1, 1, "
                "'SCORED' FROM generate_series(1, 100000) i")
            conn.exec_driver_sql("ANALYZE frames")
            tables = conn.exec_driver_sql(
                "SELECT count(*) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE c.relkind IN ('r', 'p')"
            ).scalar()
            for label, sql in QUERIES:
                doc = conn.exec_driver_sql("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + sql).scalar()[0]
                top = doc["Plan"]
                buffers = top.get("Shared Hit Blocks", 0) + top.get("Shared Read Blocks", 0)
                print(f"| {revision} | {tables} | {label} | {buffers} | {doc['Execution Time']:.1f} | "
                      f"{doc['Planning Time']:.1f} | {sum(1 for _ in _walk(top))} |")
    finally:
        engine.dispose()
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pg-admin-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    args = parser.parse_args()
    print("| schema | partition tables | query | buffers | execution ms | planning ms | plan nodes |")
    print("|---|---|---|---|---|---|---|")
    for revision in ("0018", "head"):
        measure(args.pg_admin_url, revision)


if __name__ == "__main__":
    main()
