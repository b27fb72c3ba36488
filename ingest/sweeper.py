"""Keeping the frame store and the frames table in step, and frame retention.

sweep: files without a row are removed (after a grace period, so a file whose row is
being committed right now is left alone); rows without a file are deleted, unless a
decision, an alert or a stage change refers to the frame: those are kept and marked
(``frames.file_missing_at``) so evidence never disappears silently.

The shadow loop sweeps in shares (``SweepCursor``): each pass checks the next ROWS_PER_PASS
rows and the next camera-day folders up to FILES_PER_PASS files, and starts over after the
last, so a pass costs the same on day 1 and day 90. `bearwatch frames sweep` sweeps all of it.

retain: frames captured more than N days ago are deleted (row, predictions, file),
except frames that a decision, an alert or a stage change's evidence refers to. On a
partitioned PostgreSQL (bearwatch.partitions) a whole partition at a time.
Stage-change evidence refers to frames by ``frame_id`` / ``frame_ids`` keys anywhere
in its JSON.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from bearwatch.db import write_transaction
from bearwatch.partitions import (
    DroppedPartition,
    StreamPartition,
    default_partition,
    drop_partition,
    expired_partitions,
    frame_paths,
    is_partitioned,
)
from bearwatch.schema import Alert, Decision, Frame, StageChange
from ingest.store import FrameStore

ORPHAN_FILE_GRACE_S = 600.0
BATCH = 500
ROWS_PER_PASS = 100_000  # a rolling pass's rows (one stat each) ...
FILES_PER_PASS = 100_000  # ... and files, finishing the camera-day folder it is in


@dataclass(frozen=True)
class SweepReport:
    files_removed: int
    rows_removed: int
    rows_marked: int  # rows without a file kept because evidence refers to them


@dataclass
class SweepCursor:
    """Where a rolling sweep goes on from: the last frame id checked and the last camera-day
    folder (relative to the store) listed; both start over after the last."""

    after_frame_id: int = 0
    after_folder: str = ""


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


def sweep(
    factory: sessionmaker[Session], store: FrameStore, *, now: datetime, grace_s: float = ORPHAN_FILE_GRACE_S,
    cursor: SweepCursor | None = None,
) -> SweepReport:
    """The whole store, or with ``cursor`` its next share (the cursor moves on). A rolling
    sweep lists camera-day folders (site-*/camera-*/day) only: a stray file elsewhere waits
    for a whole sweep."""
    if cursor is None:
        rows_removed, rows_marked, _ = _sweep_rows(factory, store, now, after_id=0, limit=None)
        return SweepReport(_sweep_files(factory, store, now.timestamp() - grace_s, _all_folders(store)), rows_removed, rows_marked)
    rows_removed, rows_marked, cursor.after_frame_id = _sweep_rows(
        factory, store, now, after_id=cursor.after_frame_id, limit=ROWS_PER_PASS)
    folders, cursor.after_folder = _next_folders(store, cursor.after_folder, FILES_PER_PASS)
    return SweepReport(_sweep_files(factory, store, now.timestamp() - grace_s, folders), rows_removed, rows_marked)


def _sweep_rows(
    factory: sessionmaker[Session], store: FrameStore, now: datetime, *, after_id: int, limit: int | None
) -> tuple[int, int, int]:
    """Rows without a file, in id order from ``after_id``, up to ``limit`` rows checked:
    deleted, or kept and marked missing when evidence refers to them. Returns (rows removed,
    rows marked, the id to go on after: 0 when the last row was checked)."""
    rows_removed = rows_marked = checked = 0
    last_id = after_id
    with factory() as session:
        evidence = evidence_frame_ids(session)
    while limit is None or checked < limit:
        with factory() as session:
            batch = session.execute(
                sa.select(Frame.id, Frame.path, Frame.file_missing_at).where(Frame.id > last_id).order_by(Frame.id)
                .limit(BATCH if limit is None else min(BATCH, limit - checked))
            ).all()
        if not batch:
            return rows_removed, rows_marked, 0
        last_id, checked = batch[-1].id, checked + len(batch)
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
    return rows_removed, rows_marked, last_id


def _all_folders(store: FrameStore) -> Iterator[tuple[Path, list[str]]]:
    for directory, _dirs, names in os.walk(store.root):
        yield Path(directory), names


def _camera_day_folders(store: FrameStore) -> Iterator[str]:
    """site-*/camera-*/day folders in sorted order, relative to the store: only folder names
    are listed above the day level, never a day's files."""
    def subfolders(path: Path) -> list[Path]:
        try:
            return sorted((p for p in path.iterdir() if p.is_dir()), key=lambda p: p.name)
        except FileNotFoundError:  # removed meanwhile
            return []

    for site in subfolders(store.root):
        for camera in subfolders(site):
            for day in subfolders(camera):
                yield day.relative_to(store.root).as_posix()


def _next_folders(store: FrameStore, after: str, files: int) -> tuple[list[tuple[Path, list[str]]], str]:
    """The camera-day folders after ``after`` with their file names, whole folders until
    ``files`` names are listed; and the folder to go on after ("" when the last was listed)."""
    listed: list[tuple[Path, list[str]]] = []
    count = 0
    after_key = tuple(after.split("/")) if after else ()
    for rel in _camera_day_folders(store):
        if tuple(rel.split("/")) <= after_key:  # by name at each level, as they were listed
            continue
        if count >= files:
            return listed, listed[-1][0].relative_to(store.root).as_posix()
        try:
            names = [e.name for e in os.scandir(store.root / rel) if e.is_file()]
        except FileNotFoundError:
            continue
        listed.append((store.root / rel, names))
        count += len(names)
    return listed, ""


def _sweep_files(factory: sessionmaker[Session], store: FrameStore, cutoff: float,
                 folders: Iterable[tuple[Path, list[str]]]) -> int:
    """Files in ``folders`` last modified before ``cutoff`` (a timestamp) that no row refers
    to: removed (also left-over temp files of interrupted writes). Returns how many."""
    files_removed = 0
    for directory, names in folders:
        candidates = {}
        for name in names:
            path = directory / name
            try:
                if path.stat().st_mtime < cutoff:
                    candidates[path.relative_to(store.root).as_posix()] = path
            except FileNotFoundError:
                continue
        if not candidates:
            continue
        known = _rows_of(factory, store, directory, list(candidates))
        for rel, path in candidates.items():
            if rel not in known:  # also left-over temp files of interrupted writes
                path.unlink(missing_ok=True)
                files_removed += 1
    return files_removed


def _rows_of(factory: sessionmaker[Session], store: FrameStore, directory: Path, paths: list[str]) -> set[str]:
    """Which of ``paths`` (files of ``directory``) a frame row refers to. frames.path has no
    index (it would cost every insert): a camera-day folder's rows are read once through
    (camera_id, captured_at), that camera's day and a day either side (a clock that wrote
    local time); any other folder (a whole sweep only) is looked up by path, a scan."""
    camera_day = store.camera_day(directory.relative_to(store.root).as_posix())
    wanted = set(paths)
    with factory() as session:
        if camera_day is not None:
            camera_id, day = camera_day
            return wanted.intersection(session.scalars(
                sa.select(Frame.path).where(Frame.camera_id == camera_id, Frame.captured_at >= day - timedelta(days=1),
                                            Frame.captured_at < day + timedelta(days=2))))
        known: set[str] = set()
        for i in range(0, len(paths), BATCH):
            known.update(session.scalars(sa.select(Frame.path).where(Frame.path.in_(paths[i : i + BATCH]))))
        return known


def retain(factory: sessionmaker[Session], store: FrameStore, *, days: float, now: datetime) -> RetainReport:
    """Frames captured before ``now - days`` deleted, with their predictions and files;
    evidence kept. On a partitioned PostgreSQL (bearwatch.partitions) whole stream
    partitions go once all their frames are that old (so a frame may stay up to a
    partition's span, about a week, longer), their evidence moved to the kept partition
    first; only frames in the default partition are deleted row by row."""
    cutoff = now - timedelta(days=days)
    with factory() as session:
        evidence = evidence_frame_ids(session)
        partitioned = is_partitioned(session)
        expired = expired_partitions(session, cutoff) if partitioned else []
    dropped = kept = 0
    for partition in expired:
        gone = _drop_with_files(factory, store, partition, evidence)
        dropped, kept = dropped + gone.frames, kept + len(gone.kept)
    rows = retain_rows(factory, store, cutoff, evidence, only_default=partitioned)
    return RetainReport(dropped + rows.frames_deleted, kept + rows.kept_as_evidence)


def _drop_with_files(factory: sessionmaker[Session], store: FrameStore, partition: StreamPartition,
                     evidence: set[int]) -> DroppedPartition:
    """A partition dropped, then the files of its frames but those kept as evidence. Their
    paths are written to a temporary file first (a day of a big park's paths does not
    fit in memory); files left by a crash are swept later, as orphans."""
    with tempfile.TemporaryFile("w+", encoding="utf-8") as spill:
        after = 0
        while True:
            with factory() as session:
                rows = frame_paths(session, partition, after, BATCH * 20)
            if not rows:
                break
            spill.writelines(f"{frame_id}\t{path}\n" for frame_id, path in rows)
            after = rows[-1][0]
        gone = drop_partition(factory, partition, evidence)
        spill.seek(0)
        for line in spill:
            frame_id, path = line.rstrip("\n").split("\t", 1)
            if int(frame_id) not in gone.kept:
                store.delete(path)
    return gone


def retain_rows(factory: sessionmaker[Session], store: FrameStore, cutoff: datetime, evidence: set[int], *,
                only_default: bool) -> RetainReport:
    """Row by row: frames captured before ``cutoff`` that nothing refers to (with
    ``only_default``, those in the partitioned frames' default partition only)."""
    frames = default_partition() if only_default else Frame.__table__
    old = frames.c.captured_at < cutoff
    with factory() as session:
        kept = session.scalar(
            sa.select(sa.func.count()).select_from(frames)
            .where(old, sa.or_(_referenced(frames.c.id), frames.c.id.in_(evidence) if evidence else sa.false()))
        ) or 0
    deleted = 0
    last_id = 0
    while True:
        with write_transaction(factory) as session:
            rows = session.execute(
                sa.select(frames.c.id, frames.c.path)
                .where(old, frames.c.id > last_id, ~_referenced(frames.c.id))
                .order_by(frames.c.id).limit(BATCH)
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
