"""PostgreSQL's partitioned frames and predictions (migration 0022): partitions made
ahead, and whole partitions dropped by retention.

frames is partitioned by LIST (kept): ``frames_kept`` (evidence retention kept) and
``frames_stream``, by RANGE (id) into ``frames_pN``; predictions alike by (frame_kept,
frame_id) with the same bounds, so ``frames_pN`` and ``predictions_pN`` go together.
Frame ids come from one sequence in capture order, so a range is a stretch of time: each
partition is sized to hold about PARTITION_DAYS of frames (the last full one's rate).
A query by capture time (the guard's hours, the review queue's windows) states a frame-id
floor beside its window (``frame_id_floor``), so the planner leaves out the partitions
below it; what it cannot bound (a frame by id, a held alert of any age) is planned over
every partition and probed at run time. Fewer, larger partitions: each one costs every
statement on frames or predictions planning time (docs/benchmarks.md). The price: a
frame stays up to a partition's span past the retention window.
``frames_stream_default`` takes any id no range holds (none while partitions are made
ahead); new ranges start above its rows, and retention deletes its old rows one by one.

Not the default yet: the migration partitions only where OPT_IN=1 is set when it runs
(PostgreSQL 15+). Every partition a statement plans over costs it: the season bench
measured the verdict round trip at 43 ms on plain tables and 132 ms on these at 10M frames
(187 before the floor), and on a park's layout (one partition holding the 10M) drift's
and the guard's first passes and capture -> delivered are yet to be explained
(docs/benchmarks.md).
SQLite, PostgreSQL before 15 and a database migrated without OPT_IN have none of this:
``is_partitioned`` is False and retention deletes rows.
"""

from __future__ import annotations

import re
import time
import weakref
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from bearwatch.db import write_transaction
from bearwatch.schema import FRAMES_FILLFACTOR, Frame

OPT_IN = "BEARWATCH_PARTITIONED_FRAMES"  # =1 where migration 0022 runs: the partitioned layout
PARTITION_DAYS = 7.0  # the capture time a partition holds
MIN_SPAN = 100_000  # ids in a partition, at least ...
MAX_SPAN = 1_000_000_000  # ... and at most (a week of 1,650 frames a second)
# Partitions kept ready above the next frame id: one (a week of frames, made again within
# the hour it starts filling); each empty one costs every statement planning time.
AHEAD = 1
# How long partition changes wait for their locks: a detach (and an attach, on the default
# partition) waits behind every query reading frames, and every query after waits behind
# it. Rather than hold ingest and the dashboard, give up and try again next hour.
DDL_LOCK_WAIT_MS = 2000
DAY_S = 86_400.0
# The tables that keep a foreign key (frame_id, frame_kept) to frames (ON UPDATE CASCADE).
FRAME_REFERRERS = ("decisions", "alerts", "frame_votes", "frame_queue")
# Objects of the partitioned layout that bearwatch.schema does not describe (it describes
# the plain tables SQLite keeps): left out of the schema comparison (alembic/env.py).
_LAYOUT_COLUMNS = {("frames", "kept"), ("predictions", "frame_kept"), *((t, "frame_kept") for t in FRAME_REFERRERS)}
_LAYOUT_CONSTRAINTS = {"uq_frames_camera_id_captured_at", "uq_predictions_frame_id_model_version_id"}
_LAYOUT_INDEXES = {"ix_alerts_frame_id_frame_kept"}
_FOREIGN_KEYS_CHANGED = {"frames", "predictions"}  # keys to these: composite, or triggers instead

_BOUND = re.compile(r"FOR VALUES FROM \((MINVALUE|'?-?\d+'?)\) TO \((MAXVALUE|'?-?\d+'?)\)")
_NUMBER = re.compile(r"frames_p(\d+)")
_PARTITION = re.compile(r"(frames|predictions)_(kept|stream|stream_default|p\d+)")
_LOWEST = -(2**63)

# How long a process goes by what it read of the partitions for frame_id_floor: sealed
# partitions never change, so an older reading only prunes less (a partition sealed since).
FLOOR_READING_S = 300.0

_partitioned: weakref.WeakKeyDictionary[sa.Engine, bool] = weakref.WeakKeyDictionary()


@dataclass(frozen=True)
class StreamPartition:
    number: int
    low: int  # the first id it holds (_LOWEST for MINVALUE) ...
    high: int  # ... and the first it does not

    @property
    def frames(self) -> str:
        return f"frames_p{self.number}"

    @property
    def predictions(self) -> str:
        return f"predictions_p{self.number}"


def is_partitioned(session: Session) -> bool:
    """Whether this database has the partitioned layout (asked once per engine: only a
    migration changes it)."""
    engine = session.get_bind()
    assert isinstance(engine, sa.Engine)
    if engine.dialect.name != "postgresql":
        return False
    if engine not in _partitioned:
        _partitioned[engine] = has_layout(session.connection())
    return _partitioned[engine]


def has_layout(connection: sa.Connection) -> bool:
    """Asked of the database now (no cache; alembic/env.py asks on its connection)."""
    return connection.dialect.name == "postgresql" and bool(connection.exec_driver_sql(
        "SELECT EXISTS (SELECT 1 FROM pg_partitioned_table WHERE partrelid = to_regclass('frames'))").scalar())


def layout_object(type_: str, name: str | None, table: str | None, referred: str | None) -> bool:
    """Whether a schema object is the partitioned layout's own (alembic/env.py leaves these
    out of the comparison with bearwatch.schema on a partitioned database)."""
    if type_ == "table":
        return name is not None and _PARTITION.fullmatch(name) is not None
    if type_ == "column":
        return (table, name) in _LAYOUT_COLUMNS
    if type_ == "unique_constraint":
        return name in _LAYOUT_CONSTRAINTS
    if type_ == "index":
        return name in _LAYOUT_INDEXES
    if type_ == "foreign_key_constraint":
        # (PostgreSQL also lists a key to a partitioned table once per partition)
        return referred is not None and (referred in _FOREIGN_KEYS_CHANGED or _PARTITION.fullmatch(referred) is not None)
    return False


@dataclass
class _Sealed:
    """What frame_id_floor reads of an engine's partitions, at ``read_at`` (monotonic)."""
    read_at: float
    next_id: int  # the first frame id not given then: every frame written since has a higher one
    newest: dict[StreamPartition, datetime | None]  # the partitions sealed then, lowest first: their newest capture
    default_lowest: int | None  # the lowest id in the default partition then (its rows lie between ranges)
    kept_newest: datetime | None  # the newest capture among frames_kept's then (partitions dropped before)


_sealed: weakref.WeakKeyDictionary[sa.Engine, _Sealed] = weakref.WeakKeyDictionary()


def frame_id_floor(session: Session, since: datetime) -> int | None:
    """The lowest id a frame captured at or after ``since`` can have on the partitioned
    layout, for conditions ``Frame.id >= floor`` (and ``Prediction.frame_id >= floor``)
    beside a query's capture-time window: PostgreSQL then leaves the stream partitions
    below it out of the plan instead of planning and probing every partition (the work of
    a windowed query grows no more with the partitions retention keeps). None: nothing to
    leave out (a plain database, or the window reaches the oldest partition).

    Sound because a partition no new frame goes to (sealed) keeps its newest capture
    time: the floor is the first id of the lowest sealed partition holding a frame
    captured since ``since`` (every partition below holds none; evidence moved to
    frames_kept keeps its id), else where the sealed ones end, lowered to the default
    partition's lowest row and to the next id. A backfilled frame (old capture, new id)
    lies above the floor. Evidence of partitions dropped before the reading lies in
    frames_kept with ids the reading does not place: no floor for a window reaching back
    to its newest frame. Read at most every FLOOR_READING_S per engine (a few catalog and
    index reads), each sealed partition's newest capture once."""
    if not is_partitioned(session):
        return None
    engine = session.get_bind()
    assert isinstance(engine, sa.Engine)
    sealed = _sealed.get(engine)
    if sealed is None or time.monotonic() - sealed.read_at > FLOOR_READING_S:
        sealed = _read_sealed(session, sealed.newest if sealed is not None else {})
        _sealed[engine] = sealed
    partitions = list(sealed.newest)
    if not partitions or (sealed.kept_newest is not None and sealed.kept_newest >= since):
        return None
    floor = next((p.low for p, newest in sealed.newest.items() if newest is not None and newest >= since),
                 partitions[-1].high)
    floor = min(floor, sealed.next_id, sealed.default_lowest if sealed.default_lowest is not None else floor)
    return floor if floor > partitions[0].low else None


def forget_readings() -> None:
    """frame_id_floor reads the partitions again on its next call (tests that change them)."""
    _sealed.clear()


def _read_sealed(session: Session, known: dict[StreamPartition, datetime | None]) -> _Sealed:
    """A new reading; the newest capture of a partition sealed at an earlier one (``known``)
    is not read again."""
    next_id = next_frame_id(session)
    newest = {p: known[p] if p in known else _captured(session, p.frames, count=False)[1]
              for p in stream_partitions(session) if p.high <= next_id}
    default_lowest = session.scalar(sa.text("SELECT min(id) FROM frames_stream_default"))
    kept_newest = _captured(session, "frames_kept", count=False)[1]
    return _Sealed(time.monotonic(), next_id, newest, default_lowest, kept_newest)


def at_least(floor: int | None, *ids: sa.ColumnElement[int] | sa.orm.InstrumentedAttribute[int]) -> list[sa.ColumnElement[bool]]:
    """``id >= floor`` for each of ``ids`` (frame ids: frames.id, predictions.frame_id),
    or nothing where ``floor`` is None (frame_id_floor)."""
    return [] if floor is None else [column >= floor for column in ids]


def stream_partitions(session: Session) -> list[StreamPartition]:
    """The ranged stream partitions of frames, lowest first (the default one left out)."""
    rows = session.execute(sa.text(
        "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "WHERE i.inhparent = 'frames_stream'::regclass"
    )).all()
    found = []
    for name, bound in rows:
        number, range_ = _NUMBER.fullmatch(name), _BOUND.search(bound)
        if number is None or range_ is None:
            continue
        low, high = (_value(v) for v in range_.groups())
        found.append(StreamPartition(int(number.group(1)), low, high))
    return sorted(found, key=lambda p: p.low)


def _value(bound: str) -> int:
    if bound == "MINVALUE":
        return _LOWEST
    if bound == "MAXVALUE":
        return 2**63 - 1
    return int(bound.strip("'"))


def default_partition() -> sa.TableClause:
    """The default stream partition of frames, for reading it alone (a condition on
    ``tableoid`` would read the old frames of every partition, the kept ones too)."""
    columns = Frame.__table__.c
    return sa.table("frames_stream_default", *(sa.column(name, columns[name].type) for name in ("id", "path", "captured_at")))


def next_frame_id(session: Session) -> int:
    """The first frame id not given yet."""
    last, called = session.execute(sa.text("SELECT last_value, is_called FROM frames_id_seq")).one()
    return int(last) + 1 if called else int(last)


def ensure_partitions(factory: sessionmaker[Session]) -> int:
    """Make stream partitions until AHEAD of them lie wholly above the next frame id;
    returns how many were made (0 on a plain database, without a write transaction)."""
    with factory() as session:
        if not is_partitioned(session):
            return 0
    with write_transaction(factory) as session:
        partitions = stream_partitions(session)
        next_id = next_frame_id(session)
        ready = sum(1 for p in partitions if p.low >= next_id)
        if ready >= AHEAD:
            return 0
        span = _span(session, partitions, next_id)
        number = max((p.number for p in partitions), default=0) + 1
        in_default = session.scalar(sa.text("SELECT max(id) FROM frames_stream_default"))
        # above the ranges, the default partition's rows and ids the sequence already passed
        low = max(partitions[-1].high if partitions else next_id, (in_default or 0) + 1, next_id)
        for k in range(AHEAD - ready):
            make_stream_partition(session, number + k, low, low + span)
            low += span
        return AHEAD - ready


def _span(session: Session, partitions: list[StreamPartition], next_id: int) -> int:
    """About PARTITION_DAYS of frame ids: the rate at which the last full partition
    filled, else the top partition's size."""
    full = [p for p in partitions if p.high <= next_id and p.low > _LOWEST]
    for last in full[-3:][::-1]:  # (one emptied by hand, or a park that was off, says nothing)
        first, final, _count = _captured(session, last.frames, count=False)
        if first is not None and final is not None and final > first:
            per_span = (last.high - last.low) * PARTITION_DAYS * DAY_S / (final - first).total_seconds()
            return int(min(MAX_SPAN, max(MIN_SPAN, round(per_span, -3))))
    ranged = [p for p in partitions if p.low > _LOWEST]
    return ranged[-1].high - ranged[-1].low if ranged else MIN_SPAN


def remake_stream_partitions(session: Session, sizes: Sequence[int]) -> None:
    """The empty stream partitions from the next frame id on replaced by new ones of
    ``sizes`` ids each, the first from the next id (a bench or a test that fills a park's
    history in bulk lays the partitions out as a park's days would have)."""
    next_id = next_frame_id(session)
    for partition in stream_partitions(session):
        if partition.high > next_id:
            if partition.low < next_id or session.scalar(sa.text(f"SELECT EXISTS (SELECT 1 FROM {partition.frames})")):
                raise ValueError(f"{partition.frames} holds frames: only empty partitions are made again")
            _detach_and_drop(session, partition)
    number = max((p.number for p in stream_partitions(session)), default=0) + 1
    low = next_id
    for k, size in enumerate(sizes):
        make_stream_partition(session, number + k, low, low + size)
        low += size


def _detach_and_drop(session: Session, partition: StreamPartition) -> None:
    """predictions_pN, then frames_pN (nothing may refer to a frame of it by then: the
    keys refuse the detach otherwise)."""
    for parent, table in (("predictions", partition.predictions), ("frames", partition.frames)):
        session.execute(sa.text(f"ALTER TABLE {parent}_stream DETACH PARTITION {table}"))
        session.execute(sa.text(f"DROP TABLE {table}"))


def make_stream_partition(session: Session, number: int, low: int, high: int) -> None:
    """frames_pN and predictions_pN for ids [low, high), their indexes named after the
    root tables' (ix_frames_captured_at_p3), each frames partition with its own unique
    (camera_id, captured_at). Made apart and attached: an attach takes a lock that lets
    ingest, inference and the dashboard go on (a CREATE ... PARTITION OF would hold them).
    (Migration 0022 has a frozen copy.)"""
    session.execute(sa.text(f"SET LOCAL lock_timeout = '{DDL_LOCK_WAIT_MS}ms'"))
    for table, options in (("frames", f" WITH (fillfactor = {FRAMES_FILLFACTOR})"), ("predictions", "")):
        name = f"{table}_p{number}"
        session.execute(sa.text(f"CREATE TABLE {name} (LIKE {table} INCLUDING DEFAULTS){options}"))
        if table == "frames":
            session.execute(sa.text(f"CREATE UNIQUE INDEX uq_frames_camera_id_captured_at_p{number} "
                                    f"ON {name} (camera_id, captured_at)"))
        session.execute(sa.text(f"ALTER TABLE {table}_stream ATTACH PARTITION {name} FOR VALUES FROM ({low}) TO ({high})"))
        for index, root in session.execute(sa.text(
            "SELECT c.relname, pg_partition_root(c.oid)::regclass::text FROM pg_index x "
            "JOIN pg_class c ON c.oid = x.indexrelid WHERE x.indrelid = CAST(:t AS regclass) AND pg_partition_root(c.oid) <> c.oid"
        ), {"t": name}).all():
            session.execute(sa.text(f'ALTER INDEX "{index}" RENAME TO "{root}_p{number}"'))


def _captured(session: Session, partition: str, count: bool = True) -> tuple[datetime | None, datetime | None, int]:
    """A frames partition's first and last capture time (as bearwatch.schema reads them),
    and its frames (with ``count``: a read of its primary key)."""
    table = sa.table(partition, sa.column("captured_at", Frame.__table__.c.captured_at.type))
    first, last, frames = session.execute(sa.select(
        sa.func.min(table.c.captured_at), sa.func.max(table.c.captured_at),
        sa.func.count() if count else sa.literal(0))).one()
    return first, last, int(frames)


@dataclass(frozen=True)
class DroppedPartition:
    frames: int  # dropped with it
    kept: frozenset[int]  # the frames moved to frames_kept as evidence


def frame_paths(session: Session, partition: StreamPartition, after_id: int, limit: int) -> list[tuple[int, str]]:
    """(id, path) of a stream partition's frames above ``after_id``, in id order."""
    return [(int(i), str(p)) for i, p in session.execute(sa.text(
        f"SELECT id, path FROM {partition.frames} WHERE id > :after ORDER BY id LIMIT :limit"),
        {"after": after_id, "limit": limit})]


def expired_partitions(session: Session, cutoff: datetime) -> list[StreamPartition]:
    """Stream partitions no new frame goes to whose frames were all captured before
    ``cutoff`` (an empty one too)."""
    next_id = next_frame_id(session)
    expired = []
    for partition in stream_partitions(session):
        if partition.high > next_id:
            break
        newest = _captured(session, partition.frames, count=False)[1]
        if newest is None or newest < cutoff:
            expired.append(partition)
    return expired


def drop_partition(factory: sessionmaker[Session], partition: StreamPartition, evidence: Collection[int]) -> DroppedPartition:
    """In one transaction: the partition's evidence (frames a decision, an alert or one of
    ``evidence``, the stage changes' frame ids, refers to) moved to the kept partitions
    with their predictions, what refers to the rest deleted (queue entries, flags,
    heatmaps), and both partitions detached and dropped. A verdict on one of its frames
    committed meanwhile makes the detach fail (the foreign key): nothing is dropped, and
    the next pass keeps that frame too."""
    span = {"low": partition.low, "high": partition.high}
    in_range = "frame_id >= :low AND frame_id < :high"
    with write_transaction(factory) as session:
        session.execute(sa.text(f"SET LOCAL lock_timeout = '{DDL_LOCK_WAIT_MS}ms'"))
        count = _captured(session, partition.frames)[2]
        moved = list(session.scalars(sa.text(
            f"UPDATE frames SET kept = true WHERE id >= :low AND id < :high AND NOT kept AND ("
            f"id IN (SELECT frame_id FROM decisions WHERE {in_range} AND NOT frame_kept) "
            f"OR id IN (SELECT frame_id FROM alerts WHERE {in_range} AND NOT frame_kept) "
            "OR id = ANY(CAST(:evidence AS bigint[]))) RETURNING id"
        ), {**span, "evidence": sorted(i for i in evidence if partition.low <= i < partition.high)}))
        if moved:
            session.execute(sa.text("UPDATE predictions SET frame_kept = true WHERE frame_id = ANY(CAST(:moved AS bigint[])) AND NOT frame_kept"),
                            {"moved": moved})
        session.execute(sa.text(f"DELETE FROM prediction_heatmaps h USING {partition.predictions} p WHERE h.prediction_id = p.id"))
        session.execute(sa.text(f"DELETE FROM alert_flags a WHERE a.{in_range} "
                                "AND NOT EXISTS (SELECT 1 FROM frames_kept k WHERE k.id = a.frame_id)"), span)
        session.execute(sa.text(f"DELETE FROM frame_queue WHERE {in_range} AND NOT frame_kept"), span)
        _detach_and_drop(session, partition)
    return DroppedPartition(count - len(moved), frozenset(moved))

