"""The scoring queue: claims with leases, idempotent commits.

``frame_queue`` lists the frames waiting to be scored (database triggers add every frame
inserted pending) and holds their claim state: token, worker, lease, attempts. A claim
and a release write only there; ``frames`` is written once per frame, with its result
(scored, or failed for good). No index of frames holds status or last_error, so on
PostgreSQL that update is HOT when the page has room (bearwatch.schema.FRAMES_FILLFACTOR).

A batch commits in the same few statements whatever its size: its predictions in one
insert made from arrays (:class:`ModelScores`; COPY on PostgreSQL, executemany on
SQLite), its frames' results in one set-based update of the frames whose queue entries
still carry the claim's token, and one delete of those entries.

PostgreSQL claims with ``FOR UPDATE SKIP LOCKED`` so several workers share the queue;
SQLite serialises claims with ``BEGIN IMMEDIATE``. A frame whose lease expired is
claimed again; a worker that lost its lease cannot commit (its token no longer matches).
"""

from __future__ import annotations

import json
import os
import socket
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from itertools import repeat
from typing import Any

import numpy as np
import numpy.typing as npt
import psycopg
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import InstrumentedAttribute, Session, sessionmaker

from bearwatch.db import write_transaction
from bearwatch.partitions import is_partitioned
from bearwatch.schema import Frame, FrameQueueEntry, FrameStatus, Prediction, utcnow


def worker_id() -> str:
    """host:pid, stored with a claim so ops (and tests) see which worker holds a frame."""
    return f"{socket.gethostname()}:{os.getpid()}"[:100]


@dataclass(frozen=True)
class ClaimedFrame:
    frame_id: int
    path: str  # relative to the frame store root
    attempts: int
    kept: bool = False  # in the kept partition (bearwatch.partitions): its predictions go there too


@dataclass(frozen=True)
class Claim:
    token: str
    frames: tuple[ClaimedFrame, ...]


@dataclass(frozen=True)
class ModelScores:
    """One model's predictions for a batch, as columns: row i is the frame ``frame_ids[i]``.
    inference.scoring builds it with array operations; :func:`commit_results` stores it
    with one statement, whatever the batch size."""

    model_version_id: int
    classes: tuple[str, ...]  # the columns of ``probabilities``
    frame_ids: npt.NDArray[np.int64]  # (n,)
    probabilities: npt.NDArray[np.float32]  # (n, classes)
    positive_score: npt.NDArray[np.float64]  # (n,) the positive classes' probabilities summed
    flagged: npt.NDArray[np.bool_]  # (n,) positive_score at or over the model's threshold
    ood_score: npt.NDArray[np.float32] | None = None  # (n,); None: the model has no OOD reference
    embeddings: npt.NDArray[np.float16] | None = None  # (n, d) the penultimate layer, as stored

    def __post_init__(self) -> None:
        n = len(self.frame_ids)
        columns: list[npt.NDArray[Any] | None] = [
            self.probabilities, self.positive_score, self.flagged, self.ood_score, self.embeddings]
        if any(c is not None and len(c) != n for c in columns) or self.probabilities.shape[1:] != (len(self.classes),):
            raise ValueError(f"model {self.model_version_id}: columns of unequal lengths for {n} frames")


def _claimable() -> sa.ColumnElement[bool]:
    """Not claimed, or its lease ran out."""
    return sa.or_(FrameQueueEntry.claimed_until.is_(None), FrameQueueEntry.claimed_until < utcnow())


def _among(column: InstrumentedAttribute[int], ids: Sequence[int], session: Session) -> sa.ColumnElement[bool]:
    """``column IN ids``. On PostgreSQL one array parameter (``= ANY``): the statement's
    text, and the driver's work on it, do not grow with the batch."""
    if session.get_bind().dialect.name == "postgresql":
        return column == sa.any_(sa.bindparam(None, list(ids), type_=postgresql.ARRAY(sa.BigInteger)))
    return column.in_(list(ids))


def claim_batch(factory: sessionmaker[Session], size: int, lease_s: float) -> Claim:
    token = str(uuid.uuid4())
    with write_transaction(factory) as session:
        kept = sa.literal_column("frames.kept") if is_partitioned(session) else sa.false()
        rows = session.execute(
            sa.select(FrameQueueEntry.frame_id, Frame.path, FrameQueueEntry.attempts, kept.label("kept"))
            .join(Frame, Frame.id == FrameQueueEntry.frame_id)
            .where(_claimable())
            .order_by(FrameQueueEntry.frame_id)
            .limit(size)
            .with_for_update(of=FrameQueueEntry, skip_locked=True)
        ).all()
        if not rows:
            return Claim(token, ())
        session.execute(
            sa.update(FrameQueueEntry)
            .where(_among(FrameQueueEntry.frame_id, [r.frame_id for r in rows], session))
            .values(
                claim_token=token, claimed_by=worker_id(), claimed_until=utcnow() + timedelta(seconds=lease_s),
                attempts=FrameQueueEntry.attempts + 1,
            )
        )
    return Claim(token, tuple(ClaimedFrame(r.frame_id, r.path, r.attempts + 1, bool(r.kept)) for r in rows))


def _still_held(claim: Claim, session: Session) -> sa.ColumnElement[bool]:
    """The claim's queue entries whose lease it still holds (by the primary key, then the token)."""
    return sa.and_(
        _among(FrameQueueEntry.frame_id, [f.frame_id for f in claim.frames], session),
        FrameQueueEntry.claim_token == claim.token,
    )


_UNCLAIMED = dict(claim_token=None, claimed_by=None, claimed_until=None)


def _outcome(error: str | None, attempts: int, max_attempts: int) -> tuple[FrameStatus, str | None]:
    if error is None:
        return FrameStatus.SCORED, None
    if attempts >= max_attempts:
        return FrameStatus.FAILED, error[:1000]
    return FrameStatus.PENDING, error[:1000]  # retried: it stays queued


def commit_results(
    factory: sessionmaker[Session], claim: Claim, scored: Sequence[ModelScores], failed: Mapping[int, str],
    max_attempts: int,
) -> int:
    """Store the batch's predictions if we still hold the lease; returns frames committed.
    A constant number of statements whatever the batch size: the leases still held, the
    predictions already stored, one insert of the new ones, one update of the frames
    done, one delete of their queue entries, and one update of the entries to retry if
    there are any. A frame scored or failed for good gets its result and leaves the
    queue; one to retry stays queued, unclaimed, and its frame is not written."""
    if not claim.frames:
        return 0
    with write_transaction(factory) as session:
        # Locked until the commit: even if the lease runs out meanwhile, no other worker can
        # claim them (SKIP LOCKED) before they are out of the queue.
        held = set(session.scalars(
            sa.select(FrameQueueEntry.frame_id).where(_still_held(claim, session)).with_for_update()))
        if not held:
            return 0
        kept = {f.frame_id for f in claim.frames if f.kept}
        _insert_predictions(session, np.fromiter(sorted(held), np.int64, len(held)), scored, kept)
        attempts = {f.frame_id: f.attempts for f in claim.frames}
        outcomes = {  # failures are few: frame by frame here is cheap
            frame_id: _outcome(error, attempts[frame_id], max_attempts)
            for frame_id, error in failed.items() if frame_id in held
        }
        retried = [dict(frame_id=i, last_error=error, **_UNCLAIMED) for i, (status, error) in sorted(outcomes.items())
                   if status is FrameStatus.PENDING]
        if retried:  # unclaimed first, so the two statements below (by claim token) leave them be
            session.execute(sa.update(FrameQueueEntry), retried)
        given_up = {i: error for i, (status, error) in outcomes.items() if status is FrameStatus.FAILED}
        done = sa.select(FrameQueueEntry.frame_id).where(_still_held(claim, session))
        session.execute(sa.update(Frame).where(Frame.id.in_(done.scalar_subquery())).values(_results(given_up)))
        session.execute(sa.delete(FrameQueueEntry).where(_still_held(claim, session)))
        return len(held)


def _results(given_up: Mapping[int, str | None]) -> dict[str, Any]:
    """status and last_error of the frames done: scored, or failed for good with their error."""
    if not given_up:
        return dict(status=FrameStatus.SCORED, last_error=None)
    status_type = Frame.__table__.c.status.type
    return dict(
        status=sa.case((Frame.id.in_(list(given_up)), sa.literal(FrameStatus.FAILED, status_type)),
                       else_=sa.literal(FrameStatus.SCORED, status_type)),
        last_error=sa.case(given_up, value=Frame.id, else_=sa.null()),
    )


_PREDICTION_COLUMNS = ("frame_id", "model_version_id", "probabilities", "positive_score", "flagged", "ood_score",
                       "embedding", "scored_at")


def _insert_predictions(
    session: Session, held: npt.NDArray[np.int64], scored: Sequence[ModelScores], kept: set[int],
) -> None:
    """One insert of the held frames' predictions that are not stored yet: a frame scored
    again (set back to pending by hand) keeps its first prediction by each model, as the
    unique (frame_id, model_version_id) requires. On a partitioned PostgreSQL each row says
    whether its frame is a ``kept`` one (the partition it goes to)."""
    if not any(len(s.frame_ids) for s in scored):
        return
    stored: dict[int, list[int]] = {}
    for frame_id, model_id in session.execute(
        sa.select(Prediction.frame_id, Prediction.model_version_id)
        .where(_among(Prediction.frame_id, held.tolist(), session))
    ):
        stored.setdefault(model_id, []).append(frame_id)
    dialect = session.get_bind().dialect
    stamp_type = Prediction.__table__.c.scored_at.type
    to_driver = stamp_type.bind_processor(dialect)
    scored_at = utcnow() if to_driver is None else to_driver(utcnow())  # the batch's, as the driver takes it
    rows: list[tuple[Any, ...]] = []
    for scores in scored:
        new = np.isin(scores.frame_ids, held) & ~np.isin(scores.frame_ids, stored.get(scores.model_version_id, []))
        rows.extend(_prediction_rows(scores, new, scored_at))
    if not rows:
        return
    if dialect.name == "postgresql":
        if is_partitioned(session):
            _copy(session, [(*row, row[0] in kept) for row in rows], (*_PREDICTION_COLUMNS, "frame_kept"))
        else:
            _copy(session, rows, _PREDICTION_COLUMNS)
    else:  # SQLite: the driver's executemany, of values that are the driver's already (the
        # JSON serialised, the time converted once), so no type processing per row
        session.connection().exec_driver_sql(
            f"INSERT INTO {Prediction.__tablename__} ({', '.join(_PREDICTION_COLUMNS)}) "
            f"VALUES ({', '.join(['?'] * len(_PREDICTION_COLUMNS))})", rows)


def _copy(session: Session, rows: list[tuple[Any, ...]], names: Sequence[str]) -> None:
    """COPY on the session's connection, so in its transaction. Measured against
    SQLAlchemy's executemany (insertmanyvalues) on PostgreSQL: a fraction of the client's
    CPU per row and less of the server's."""
    driver = session.connection().connection.driver_connection
    assert isinstance(driver, psycopg.Connection)  # bearwatch's PostgreSQL driver (postgresql+psycopg://)
    columns = ", ".join(names)
    with driver.cursor() as cursor, cursor.copy(f"COPY {Prediction.__tablename__} ({columns}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)


def _prediction_rows(scores: ModelScores, keep: npt.NDArray[np.bool_], scored_at: Any) -> list[tuple[Any, ...]]:
    """The kept predictions in the order of _PREDICTION_COLUMNS, as the driver's values."""
    n = int(keep.sum())
    if n == 0:
        return []
    ood = scores.ood_score[keep].astype(np.float64).tolist() if scores.ood_score is not None else [None] * n
    embeddings: list[bytes] | list[None] = [None] * n
    if scores.embeddings is not None:
        data = np.ascontiguousarray(scores.embeddings[keep], dtype=np.float16).tobytes()
        width = len(data) // n
        embeddings = [data[i:i + width] for i in range(0, len(data), width)]
    return list(zip(
        scores.frame_ids[keep].tolist(), repeat(scores.model_version_id, n),
        probabilities_json(scores.classes, scores.probabilities[keep]),
        scores.positive_score[keep].astype(np.float64).tolist(), scores.flagged[keep].tolist(), ood, embeddings,
        repeat(scored_at, n), strict=True,
    ))


def probabilities_json(classes: Sequence[str], probabilities: npt.NDArray[np.floating[Any]]) -> list[str]:
    """Each row as the JSON column has always stored it, ``json.dumps({class: probability})``
    (keys in class order, floats as Python writes them), without a dict per row."""
    values = probabilities.astype(np.float64).tolist()
    if not np.isfinite(probabilities).all():  # NaN, Infinity: json.dumps's own spelling
        return [json.dumps(dict(zip(classes, row, strict=True))) for row in values]
    template = "{" + ", ".join(json.dumps(c).replace("%", "%%") + ": %r" for c in classes) + "}"
    return [template % tuple(row) for row in values]


def release(factory: sessionmaker[Session], claim: Claim) -> None:
    """Give a claimed batch back unscored (shutdown); the attempt is not counted and the
    frames stay queued."""
    if not claim.frames:
        return
    with write_transaction(factory) as session:
        session.execute(
            sa.update(FrameQueueEntry)
            .where(_still_held(claim, session))
            .values(attempts=FrameQueueEntry.attempts - 1, **_UNCLAIMED)
        )
