"""The scoring queue in the frames table: claims with leases, idempotent commits.

PostgreSQL claims with ``FOR UPDATE SKIP LOCKED`` so several workers share the queue;
SQLite serialises claims with ``BEGIN IMMEDIATE``. A frame whose lease expired is
claimed again; a worker that lost its lease cannot commit (its token no longer matches).
"""

from __future__ import annotations

import os
import socket
import uuid
from dataclasses import dataclass
from datetime import timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from bearwatch.db import write_transaction
from bearwatch.schema import Frame, FrameStatus, Prediction, utcnow


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
    return sa.or_(
        Frame.status == FrameStatus.PENDING,
        sa.and_(Frame.status == FrameStatus.CLAIMED, Frame.claimed_until < utcnow()),
    )


def claim_batch(factory: sessionmaker[Session], size: int, lease_s: float) -> Claim:
    token = str(uuid.uuid4())
    with write_transaction(factory) as session:
        rows = session.execute(
            sa.select(Frame.id, Frame.path, Frame.attempts)
            .where(_claimable())
            .order_by(Frame.id)
            .limit(size)
            .with_for_update(skip_locked=True)
        ).all()
        if not rows:
            return Claim(token, ())
        session.execute(
            sa.update(Frame)
            .where(Frame.id.in_([r.id for r in rows]))
            .values(
                status=FrameStatus.CLAIMED, claim_token=token, claimed_by=worker_id(),
                claimed_until=utcnow() + timedelta(seconds=lease_s), attempts=Frame.attempts + 1,
            )
        )
    return Claim(token, tuple(ClaimedFrame(r.id, r.path, r.attempts + 1) for r in rows))


def commit_results(
    factory: sessionmaker[Session], claim: Claim, rows: list[ScoreRow], failed: dict[int, str], max_attempts: int
) -> int:
    """Store the batch's predictions if we still hold the lease; returns frames committed."""
    with write_transaction(factory) as session:
        held = set(
            session.scalars(
                sa.select(Frame.id)
                .where(Frame.claim_token == claim.token, Frame.status == FrameStatus.CLAIMED)
                .with_for_update()
            )
        )
        if not held:
            return 0
        existing = {
            (frame_id, model_id)
            for frame_id, model_id in session.execute(
                sa.select(Prediction.frame_id, Prediction.model_version_id).where(Prediction.frame_id.in_(held))
            )
        }
        for row in rows:
            if row.frame_id in held and (row.frame_id, row.model_version_id) not in existing:
                session.add(Prediction(**row.__dict__))
        attempts = {f.frame_id: f.attempts for f in claim.frames}
        for frame_id in held:
            error = failed.get(frame_id)
            if error is None:
                status, last_error = FrameStatus.SCORED, None
            elif attempts.get(frame_id, max_attempts) >= max_attempts:
                status, last_error = FrameStatus.FAILED, error[:1000]
            else:
                status, last_error = FrameStatus.PENDING, error[:1000]
            session.execute(
                sa.update(Frame).where(Frame.id == frame_id)
                .values(claim_token=None, claimed_until=None, claimed_by=None, status=status, last_error=last_error)
            )
        return len(held)


def release(factory: sessionmaker[Session], claim: Claim) -> None:
    """Give a claimed batch back unscored (shutdown); the attempt is not counted."""
    with write_transaction(factory) as session:
        session.execute(
            sa.update(Frame)
            .where(Frame.claim_token == claim.token, Frame.status == FrameStatus.CLAIMED)
            .values(status=FrameStatus.PENDING, claim_token=None, claimed_until=None, claimed_by=None,
                    attempts=Frame.attempts - 1)
        )
