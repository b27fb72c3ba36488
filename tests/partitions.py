"""Tests' help with PostgreSQL's partitioned frames (bearwatch.partitions)."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from bearwatch.partitions import is_partitioned, next_frame_id, remake_stream_partitions, stream_partitions


def fill_partition(factory: sessionmaker[Session]) -> None:
    """As if the stream partition now being written had filled up (a week of a park's
    frames): the next frame goes to the next partition. Nothing on a plain database."""
    with factory.begin() as session:
        end_partition(session)


def end_partition(session: Session) -> None:
    """fill_partition in the caller's transaction."""
    if not is_partitioned(session):
        return
    next_id = next_frame_id(session)
    current = [p for p in stream_partitions(session) if p.low <= next_id < p.high]
    assert current, f"no stream partition holds the next frame id {next_id}"
    session.execute(sa.text("SELECT setval('frames_id_seq', :v, false)"), {"v": current[0].high})


def partitions_of(factory: sessionmaker[Session], *sizes: int) -> None:
    """The next frames in stream partitions of these many ids each (and a large one after),
    so that retention can drop a test's old frames apart from its young ones, as a park's
    days would lie. Nothing on a plain database."""
    with factory.begin() as session:
        if is_partitioned(session):
            remake_stream_partitions(session, [*sizes, 1_000_000])
