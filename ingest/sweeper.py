"""Keeping the frame store and the frames table in step, and frame retention.

sweep: files without a row are removed (after a grace period, so a file whose row is
being committed right now is left alone); rows without a file are deleted, unless a
decision, an alert or a stage change refers to the frame: those are kept and marked
(``frames.file_missing_at``) so evidence never disappears silently.

retain: frames captured more than N days ago are deleted (row, predictions, file),
except frames that a decision, an alert or a stage change's evidence refers to.
Stage-change evidence refers to frames by ``frame_id`` / ``frame_ids`` keys anywhere
in its JSON.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from bearwatch.db import write_transaction
from bearwatch.schema import Alert, Decision, Frame, StageChange
from ingest.store import FrameStore

ORPHAN_FILE_GRACE_S = 600.0
BATCH = 500


@dataclass(frozen=True)
class SweepReport:
    files_removed: int
    rows_removed: int
    rows_marked: int  # rows without a file kept because evidence refers to them


@dataclass(frozen=True)
class RetainReport:
    frames_deleted: int
    kept_as_evidence: int


def _evidence_ids(value: Any) -> Iterator[int]:
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "frame_id" and isinstance(item, int):
                yield item
            elif key == "frame_ids" and isinstance(item, list):
                yield from (i for i in item if isinstance(i, int))
            else:
                yield from _evidence_ids(item)
    elif isinstance(value, list):
        for item in value:
            yield from _evidence_ids(item)


def evidence_frame_ids(session: Session) -> set[int]:
    """Frames that stage-change evidence refers to."""
    ids: set[int] = set()
    for evidence in session.scalars(sa.select(StageChange.evidence)):
        ids.update(_evidence_ids(evidence))
    return ids


def _referenced(frame_id_col: Any) -> sa.ColumnElement[bool]:
    return sa.or_(
        sa.exists().where(Decision.frame_id == frame_id_col),
        sa.exists().where(Alert.frame_id == frame_id_col),
    )


def sweep(factory: sessionmaker[Session], store: FrameStore, *, now: datetime, grace_s: float = ORPHAN_FILE_GRACE_S) -> SweepReport:
    rows_removed, rows_marked = _sweep_rows(factory, store, now)
    files_removed = _sweep_files(factory, store, now.timestamp() - grace_s)
    return SweepReport(files_removed, rows_removed, rows_marked)


def _sweep_rows(factory: sessionmaker[Session], store: FrameStore, now: datetime) -> tuple[int, int]:
    """Rows without a file, in id order: deleted, or kept and marked missing when evidence
    refers to them. Returns (rows removed, rows marked)."""
    rows_removed = rows_marked = 0
    last_id = 0
    with factory() as session:
        evidence = evidence_frame_ids(session)
    while True:  # rows without files, in id order
        with factory() as session:
            batch = session.execute(
                sa.select(Frame.id, Frame.path, Frame.file_missing_at).where(Frame.id > last_id).order_by(Frame.id).limit(BATCH)
            ).all()
        if not batch:
            break
        last_id = batch[-1].id
        missing = [row for row in batch if not store.absolute(row.path).is_file()]
        if not missing:
            continue
        with write_transaction(factory) as session:
            ids = [row.id for row in missing]
            kept = set(session.scalars(sa.select(Frame.id).where(Frame.id.in_(ids), _referenced(Frame.id))))
            kept |= evidence.intersection(ids)
            deletable = [i for i in ids if i not in kept]
            if deletable:
                session.execute(sa.delete(Frame).where(Frame.id.in_(deletable)))
            unmarked = [row.id for row in missing if row.id in kept and row.file_missing_at is None]
            if unmarked:
                session.execute(sa.update(Frame).where(Frame.id.in_(unmarked)).values(file_missing_at=now))
        rows_removed += len(deletable)
        rows_marked += len(unmarked)
    return rows_removed, rows_marked


def _sweep_files(factory: sessionmaker[Session], store: FrameStore, cutoff: float) -> int:
    """Files last modified before ``cutoff`` (a timestamp) that no row refers to: removed
    (also left-over temp files of interrupted writes). Returns how many."""
    files_removed = 0
    for directory, _dirs, names in os.walk(store.root):
        candidates = {}
        for name in names:
            path = Path(directory) / name
            try:
                if path.stat().st_mtime < cutoff:
                    candidates[path.relative_to(store.root).as_posix()] = path
            except FileNotFoundError:
                continue
        if not candidates:
            continue
        known: set[str] = set()
        paths = list(candidates)
        with factory() as session:
            for i in range(0, len(paths), BATCH):
                known.update(session.scalars(sa.select(Frame.path).where(Frame.path.in_(paths[i : i + BATCH]))))
        for rel, path in candidates.items():
            if rel not in known:  # also left-over temp files of interrupted writes
                path.unlink(missing_ok=True)
                files_removed += 1
    return files_removed


def retain(factory: sessionmaker[Session], store: FrameStore, *, days: float, now: datetime) -> RetainReport:
    cutoff = now - timedelta(days=days)
    with factory() as session:
        evidence = evidence_frame_ids(session)
        kept = session.scalar(
            sa.select(sa.func.count()).select_from(Frame)
            .where(Frame.captured_at < cutoff, sa.or_(_referenced(Frame.id), Frame.id.in_(evidence) if evidence else sa.false()))
        ) or 0
    deleted = 0
    last_id = 0
    while True:
        with write_transaction(factory) as session:
            rows = session.execute(
                sa.select(Frame.id, Frame.path)
                .where(Frame.captured_at < cutoff, Frame.id > last_id, ~_referenced(Frame.id))
                .order_by(Frame.id).limit(BATCH)
            ).all()
            if not rows:
                break
            last_id = rows[-1].id
            rows = [r for r in rows if r.id not in evidence]
            if rows:
                session.execute(sa.delete(Frame).where(Frame.id.in_([r.id for r in rows])))
        for row in rows:  # the rows are gone; a file left by a crash here is swept later
            store.delete(row.path)
        deleted += len(rows)
    return RetainReport(deleted, kept)
