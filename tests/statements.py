"""What code sends to the database, for tests that bound its work: the statements with
their parameters as the driver sends them, and on PostgreSQL the shared buffers that the
reading ones touch (EXPLAIN (ANALYZE, BUFFERS): pages read or found in cache, which does
not depend on the machine's load), or the rows their scans read (EXPLAIN ANALYZE)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa


@dataclass(frozen=True)
class Sent:
    sql: str
    parameters: Any

    @property
    def reads(self) -> bool:
        return self.sql.lstrip().upper().startswith(("SELECT", "WITH"))


@contextmanager
def statements_sent(engine: sa.Engine) -> Iterator[list[Sent]]:
    """Every statement the engine sends while the block runs."""
    sent: list[Sent] = []

    def record(conn: object, cursor: object, statement: str, parameters: Any, *_: object) -> None:
        sent.append(Sent(statement, parameters))

    sa.event.listen(engine, "before_cursor_execute", record)
    try:
        yield sent
    finally:
        sa.event.remove(engine, "before_cursor_execute", record)


@contextmanager
def sql_sent(engine: sa.Engine) -> Iterator[list[str]]:
    """The SQL text of every statement the engine sends while the block runs; the list is
    filled when the block ends."""
    texts: list[str] = []
    with statements_sent(engine) as sent:
        yield texts
    texts.extend(statement.sql for statement in sent)


def buffers_touched(engine: sa.Engine, sent: Iterable[Sent]) -> int:
    """Shared buffers (hit + read) the reading statements touch, run again under EXPLAIN
    (ANALYZE, BUFFERS) on PostgreSQL."""
    total = 0
    with engine.connect() as conn:
        raw = conn.connection.driver_connection
        assert raw is not None
        for statement in sent:
            if not statement.reads:
                continue
            row = raw.execute(f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {statement.sql}", statement.parameters).fetchone()
            assert row is not None
            plan = (json.loads(row[0]) if isinstance(row[0], str) else row[0])[0]["Plan"]
            total += plan.get("Shared Hit Blocks", 0) + plan.get("Shared Read Blocks", 0)
    return total


def plan_nodes(engine: sa.Engine, statement: Sent, *, setup: str = "") -> list[dict[str, Any]]:
    """Every node of the statement's plan, run again under EXPLAIN ANALYZE on PostgreSQL in
    a transaction rolled back; ``setup``: what the code ran before it in its transaction
    (its SET LOCALs), so that it is planned as it ran."""
    with engine.connect() as conn, conn.begin() as transaction:
        if setup:
            conn.exec_driver_sql(setup)
        doc = conn.exec_driver_sql("EXPLAIN (ANALYZE, FORMAT JSON) " + statement.sql, statement.parameters).scalar()
        transaction.rollback()

    def walk(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
        yield plan
        for child in plan.get("Plans", []):
            yield from walk(child)

    assert doc is not None
    return list(walk((doc if isinstance(doc, list) else [doc])[0]["Plan"]))


_PARTITION = re.compile(r"(.*(?:frames|predictions).*?)(?:_stream)?_(?:p\d+|kept|stream|default)")


def root_name(name: str) -> str:
    """A partition's (or its index's) name as its root table's (index's) on PostgreSQL's
    partitioned frames and predictions (bearwatch.partitions): frames_p1 -> frames,
    ix_frames_captured_at_p1 -> ix_frames_captured_at; other names as they are."""
    match = _PARTITION.fullmatch(name)
    return match.group(1) if match else name


def rows_read(nodes: Iterable[dict[str, Any]], relations: Iterable[str] | None = None) -> int:
    """The rows the plan's scans of tables (of ``relations``, or of any; a partition counts
    as its root table) read: returned or filtered out, over all loops."""
    wanted = set(relations) if relations is not None else None
    return sum((n.get("Actual Rows", 0) + n.get("Rows Removed by Filter", 0)) * n.get("Actual Loops", 1)
               for n in nodes if "Relation Name" in n and (wanted is None or root_name(n["Relation Name"]) in wanted))
