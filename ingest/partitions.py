"""Day partitions of frames and predictions on PostgreSQL (migration 0019).

``frames`` and ``predictions`` are partitioned by ``kept`` (evidence: never dropped) and
then by the capture day (UTC), one partition per day in the schema
``bearwatch_partitions``. The housekeeping job creates the next days' partitions
(:func:`ensure_partitions`) and retention drops the days older than its cutoff whole
(:func:`drop_old_days`): first the evidence among them moves to the kept partition (same
id, its predictions with it), then what refers to the other frames without a trigger's
help goes (queue entries, flags, heatmaps), and the two day tables are dropped in one
short transaction that re-checks the evidence under lock; the JPEGs go after the commit.
SQLite has none of this: retention deletes rows (ingest.sweeper).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from bearwatch.schema import Alert, Decision, Frame, Prediction
from ingest.store import FrameStore

log = logging.getLogger(__name__)

SCHEMA = "bearwatch_partitions"
DAYS_AHEAD = 7
_DAY_TABLE = "frames_"  # frames_YYYYMMDD; predictions_YYYYMMDD beside it


@dataclass(frozen=True)
class DropReport:
    days_dropped: int
    frames_dropped: int
    kept_as_evidence: int  # frames of those days moved to the kept partition


def is_partitioned(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def ensure_partitions(factory: sessionmaker[Session], today: date, days_ahead: int = DAYS_AHEAD) -> int:
    """Partitions for today and the next ``days_ahead`` days; returns how many were new.
    Idempotent: the housekeeping job calls it every hour."""
    created = 0
    for n in range(days_ahead + 1):
        with factory.begin() as session:  # one short lock of the parents per day
            created += bool(session.scalar(sa.text(f"SELECT {SCHEMA}.ensure_day(:day)"), {"day": today + timedelta(n)}))
    return created


def keep_partitions(factory: sessionmaker[Session], now: datetime) -> int:
    """The housekeeping job: the next days' partitions on PostgreSQL (SQLite: nothing)."""
    with factory() as session:
        if not is_partitioned(session):
            return 0
    return ensure_partitions(factory, now.astimezone(timezone.utc).date())


def day_partitions(session: Session) -> list[date]:
    """The days that have a frames partition, oldest first."""
    names = session.scalars(sa.text(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        f"WHERE i.inhparent = '{SCHEMA}.frames_stream'::regclass AND c.relname <> 'frames_default'"
    ))
    return sorted(datetime.strptime(n.removeprefix(_DAY_TABLE), "%Y%m%d").date() for n in names)


def default_rows(session: Session) -> int:
    """Frames in the default partition: none unless a day's partition was missing."""
    return session.scalar(sa.text(f"SELECT count(*) FROM {SCHEMA}.frames_default")) or 0


def drop_old_days(
    factory: sessionmaker[Session], store: FrameStore, *, cutoff: datetime, evidence: Iterable[int],
    lock_timeout_s: float = 30.0,
) -> DropReport:
    """Drop every day partition that ends at or before ``cutoff`` (UTC), keeping evidence:
    frames a decision or an alert refers to, and ``evidence`` (stage-change JSON ids)."""
    ledger = sorted(set(evidence))
    with factory() as session:
        days = [d for d in day_partitions(session) if _start(d + timedelta(1)) <= cutoff]
    dropped = kept = 0
    for day in days:
        evidence_kept = _mark_evidence(factory, day, ledger)  # outside the drop's lock: most of the work
        _delete_referring(factory, day)
        paths, count, late = _drop_day(factory, day, ledger, lock_timeout_s)
        for path in paths:  # the rows are gone; a file left by a crash here is swept later
            store.delete(path)
        dropped, kept = dropped + count, kept + evidence_kept + late
        log.info("retention dropped the partitions of %s: %d frames, %d kept as evidence", day, count, evidence_kept + late)
    if days:
        with factory() as session:
            stray = default_rows(session)
        if stray:  # rows of a day that had no partition: retention deletes them row by row
            log.warning("%d frames are in %s.frames_default (a day without its partition)", stray, SCHEMA)
    return DropReport(len(days), dropped, kept)


def _start(day: date) -> datetime:
    return datetime.combine(day, time(), timezone.utc)


def _of_day(table: Any, day: date) -> sa.ColumnElement[bool]:
    """The rows of ``table`` (frames, or predictions by their copies) in ``day``'s partition."""
    return sa.and_(~table.kept, table.captured_at >= _start(day), table.captured_at < _start(day + timedelta(1)))


def _evidence_of_day(day: date, ledger: list[int]) -> sa.Select[int]:
    referred = sa.or_(
        sa.exists().where(Decision.frame_id == Frame.id), sa.exists().where(Alert.frame_id == Frame.id),
        Frame.id.in_(ledger) if ledger else sa.false(),
    )
    return sa.select(Frame.id).where(_of_day(Frame, day), referred)


def _mark_evidence(factory: sessionmaker[Session], day: date, ledger: list[int]) -> int:
    """Move the day's evidence frames, and their predictions, to the kept partition."""
    with factory.begin() as session:
        return _mark(session, day, ledger)


def _mark(session: Session, day: date, ledger: list[int]) -> int:
    rows = session.execute(_evidence_of_day(day, ledger)).all()
    if not rows:
        return 0
    ids = [r.id for r in rows]
    session.execute(sa.update(Prediction).where(_of_day(Prediction, day), Prediction.frame_id.in_(ids)).values(kept=True))
    session.execute(sa.update(Frame).where(_of_day(Frame, day), Frame.id.in_(ids)).values(kept=True))
    return len(ids)


def _delete_referring(factory: sessionmaker[Session], day: date) -> None:
    """What refers to the day's frames and goes with them: a drop fires no delete trigger.
    (Decided or alerted frames are kept; frame_votes exist only for decided ones.)"""
    with factory.begin() as session:
        _delete_referring_in(session, day)


def _tables(day: date) -> tuple[str, str]:
    return f"{SCHEMA}.{_DAY_TABLE}{day:%Y%m%d}", f"{SCHEMA}.predictions_{day:%Y%m%d}"


def _delete_referring_in(session: Session, day: date) -> None:
    frames, predictions = _tables(day)
    for statement in (
        f"DELETE FROM prediction_heatmaps h USING {predictions} p WHERE h.prediction_id = p.id",
        f"DELETE FROM alert_flags a USING {frames} f WHERE a.frame_id = f.id",
        f"DELETE FROM frame_queue q USING {frames} f WHERE q.frame_id = f.id",
        f"DELETE FROM frame_votes v USING {frames} f WHERE v.frame_id = f.id",
    ):
        session.execute(sa.text(statement))


def _drop_day(factory: sessionmaker[Session], day: date, ledger: list[int], lock_timeout_s: float) -> tuple[list[str], int, int]:
    """Lock the day's two tables (a writer holding one of their rows, e.g. a verdict's
    FOR KEY SHARE on its frame, finishes first), mark the evidence that arrived since,
    delete what refers to the rest, read their paths, drop. Returns (paths, frames, late evidence)."""
    frames, predictions = _tables(day)
    with factory.begin() as session:
        session.execute(sa.text(f"SET LOCAL lock_timeout = '{int(lock_timeout_s * 1000)}ms'"))
        # Parents first, as every query locks them (no deadlock); the drop needs them anyway.
        session.execute(sa.text(f"LOCK TABLE frames, predictions, {frames}, {predictions} IN ACCESS EXCLUSIVE MODE"))
        late = _mark(session, day, ledger)
        _delete_referring_in(session, day)
        paths = list(session.scalars(sa.text(f"SELECT path FROM {frames}")))
        session.execute(sa.text(f"DROP TABLE {predictions}, {frames}"))
    return paths, len(paths), late


# The schema drift check (alembic autogenerate) on PostgreSQL: bearwatch.schema describes
# the tables as SQLite has them; on PostgreSQL the foreign keys to frames/predictions are
# triggers and their unique keys hold the partition key too (migration 0019).
_PARTITIONED = frozenset({"frames", "predictions"})
_WIDENED_KEYS = frozenset({"uq_frames_camera_id_captured_at", "uq_predictions_frame_id_model_version_id",
                           "uq_predictions_id_kept_captured_at"})


def alembic_include_object(dialect_name: str) -> Callable[[Any, str | None, str, bool, Any], bool]:
    """alembic/env.py's ``include_object``: leaves out of the comparison what 0019
    changed on purpose on PostgreSQL (nothing on SQLite)."""

    def include(obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
        if dialect_name != "postgresql":
            return True
        if type_ == "foreign_key_constraint":
            return obj.referred_table.name not in _PARTITIONED
        return not (type_ in ("unique_constraint", "index") and name in _WIDENED_KEYS)

    return include
