"""The scoring queue: claims with leases, idempotent commits.

``frame_queue`` lists the frames waiting to be scored (database triggers add every frame
inserted pending) and holds their claim state: token, worker, lease, attempts. A claim
and a release write only there; ``frames`` is written once per frame, with its result
(scored, or failed for good), in one set-based update that also takes the frame out of
the queue. No index of frames holds status or last_error, so on PostgreSQL that update
is HOT when the page has room (bearwatch.schema.FRAMES_FILLFACTOR).

PostgreSQL claims with ``FOR UPDATE SKIP LOCKED`` so several workers share the queue;
SQLite serialises claims with ``BEGIN IMMEDIATE``. A frame whose lease expired is
claimed again; a worker that lost its lease cannot commit (its token no longer matches).
"""

from __future__ import annotations

import os
import socket
import uuid
from dataclasses import asdict, dataclass
from datetime import timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from bearwatch.db import write_transaction
from bearwatch.schema import Frame, FrameQueueEntry, FrameStatus, Prediction, utcnow


def worker_id() -> str:
    """host:pid, stored with a claim so ops (and tests) see which worker holds a frame."""
    return f"{socket.gethostname()}:{os.getpid()}"[:100]


@dataclass(frozen=True)
class ClaimedFrame:
    frame_id: int
    path: str  # relative to the frame store root
    attempts: int


@dataclass(frozen=True)
class Claim:
    token: str
    frames: tuple[ClaimedFrame, ...]


@dataclass(frozen=True)
class ScoreRow:
    frame_id: int
    model_version_id: int
    probabilities: dict[str, float]
    positive_score: float
    flagged: bool
    ood_score: float | None = None
    embedding: bytes | None = None


def _claimable() -> sa.ColumnElement[bool]:
    """Not claimed, or its lease ran out."""
    return sa.or_(FrameQueueEntry.claimed_until.is_(None), FrameQueueEntry.claimed_until < utcnow())


def claim_batch(factory: sessionmaker[Session], size: int, lease_s: float) -> Claim:
    token = str(uuid.uuid4())
    with write_transaction(factory) as session:
        rows = session.execute(
            sa.select(FrameQueueEntry.frame_id, Frame.path, FrameQueueEntry.attempts)
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
            .where(FrameQueueEntry.frame_id.in_([r.frame_id for r in rows]))
            .values(
                claim_token=token, claimed_by=worker_id(), claimed_until=utcnow() + timedelta(seconds=lease_s),
                attempts=FrameQueueEntry.attempts + 1,
            )
        )
    return Claim(token, tuple(ClaimedFrame(r.frame_id, r.path, r.attempts + 1) for r in rows))


def _still_held(claim: Claim) -> sa.ColumnElement[bool]:
    """The claim's queue entries whose lease it still holds."""
    return sa.and_(
        FrameQueueEntry.frame_id.in_([f.frame_id for f in claim.frames]),
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
    factory: sessionmaker[Session], claim: Claim, rows: list[ScoreRow], failed: dict[int, str], max_attempts: int
) -> int:
    """Store the batch's predictions if we still hold the lease; returns frames committed.
    A constant number of statements whatever the batch size. A frame scored or failed for
    good gets its result and leaves the queue; one to retry stays queued, unclaimed, and
    its frame is not written."""
    if not claim.frames:
        return 0
    with write_transaction(factory) as session:
        held = set(session.scalars(sa.select(FrameQueueEntry.frame_id).where(_still_held(claim)).with_for_update()))
        if not held:
            return 0
        existing = {
            (frame_id, model_id)
            for frame_id, model_id in session.execute(
                sa.select(Prediction.frame_id, Prediction.model_version_id).where(Prediction.frame_id.in_(held))
            )
        }
        new_predictions = [
            asdict(row) for row in rows
            if row.frame_id in held and (row.frame_id, row.model_version_id) not in existing
        ]
        if new_predictions:
            session.execute(sa.insert(Prediction), new_predictions)
        attempts = {f.frame_id: f.attempts for f in claim.frames}
        outcomes = {
            frame_id: _outcome(failed.get(frame_id), attempts.get(frame_id, max_attempts), max_attempts)
            for frame_id in sorted(held)  # rows written in id order, as claimed
        }
        results = [dict(id=i, status=status, last_error=error) for i, (status, error) in outcomes.items()
                   if status is not FrameStatus.PENDING]
        retried = [dict(frame_id=i, last_error=error, **_UNCLAIMED) for i, (status, error) in outcomes.items()
                   if status is FrameStatus.PENDING]
        if results:
            session.execute(sa.update(Frame), results)  # by primary key, one executemany
            session.execute(sa.delete(FrameQueueEntry).where(FrameQueueEntry.frame_id.in_([r["id"] for r in results])))
        if retried:
            session.execute(sa.update(FrameQueueEntry), retried)
        return len(held)


def release(factory: sessionmaker[Session], claim: Claim) -> None:
    """Give a claimed batch back unscored (shutdown); the attempt is not counted and the
    frames stay queued."""
    if not claim.frames:
        return
    with write_transaction(factory) as session:
        session.execute(
            sa.update(FrameQueueEntry)
            .where(_still_held(claim))
            .values(attempts=FrameQueueEntry.attempts - 1, **_UNCLAIMED)
        )
