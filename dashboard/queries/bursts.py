"""The Review page's read of a frame's burst: the open flags of its camera around it that
one "dismiss all" would take (shadow.bursts.find_burst, which owns the rule)."""

from __future__ import annotations

from sqlalchemy.orm import Session

from shadow.bursts import BURST_WINDOW, Burst, find_burst

__all__ = ["BURST_WINDOW", "Burst", "burst_of"]


def burst_of(session: Session, frame_id: int) -> Burst:
    return find_burst(session, frame_id)
