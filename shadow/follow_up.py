"""Follow-up review: around a bear the audit found on an unflagged frame, rangers check the
frames within the alert cooldown on the same camera, and on from each bear among them,
until the missed sighting is known whole (adaptive cluster sampling, Thompson 1990,
JASA 85: 1050-1059). Then its chance of being found by the audit is known exactly, and
the recall estimate (shadow.sightings) need not lean on the worst case.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session

from bearwatch.schema import Decision, Frame, ReviewReason, Verdict

FOUND_BY_DESIGN = (ReviewReason.AUDIT, ReviewReason.FOLLOW_UP)
MAX_ANCHORS = 200  # the newest found misses the review queue looks around (bounded work per request; shadow.review_queue)

def is_follow_up(session: Session, camera_id: int, captured_at: datetime, cooldown_s: float) -> bool:
    """Whether an unflagged frame is within the cooldown of a found miss on its camera."""
    reach = timedelta(seconds=cooldown_s)
    return session.scalar(
        sa.select(sa.literal(1)).select_from(Decision).join(Frame, Frame.id == Decision.frame_id)
        .where(Frame.camera_id == camera_id, Frame.captured_at >= captured_at - reach,
               Frame.captured_at <= captured_at + reach, Decision.verdict == Verdict.MISSED,
               Decision.review_reason.in_(FOUND_BY_DESIGN))
        .limit(1)
    ) is not None
