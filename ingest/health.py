"""Camera health: the policy (pure), reconnect backoff, and stored transitions.

online: the last sample was stored. degraded: fewer than OFFLINE_AFTER failures in a
row. offline: OFFLINE_AFTER or more. disabled: switched off by an admin. Every change
is a row in camera_health_events (it feeds drift views and the rollout guard); so is a
change in how a camera is sampled (a note: from and to are the same health).
"""

from __future__ import annotations

import random
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session

from bearwatch.schema import Camera, CameraHealth, CameraHealthEvent

OFFLINE_AFTER = 3


def health_after(consecutive_failures: int, enabled: bool = True) -> CameraHealth:
    if not enabled:
        return CameraHealth.DISABLED
    if consecutive_failures <= 0:
        return CameraHealth.ONLINE
    return CameraHealth.DEGRADED if consecutive_failures < OFFLINE_AFTER else CameraHealth.OFFLINE


def backoff_s(consecutive_failures: int, *, base_s: float, cap_s: float, rng: random.Random) -> float:
    """Seconds to wait before trying a failing camera again: capped exponential with
    jitter (half to all of the step), so cameras behind one dead switch do not all
    retry in the same instant."""
    if consecutive_failures <= 0:
        return 0.0
    step = min(cap_s, base_s * 2 ** min(consecutive_failures - 1, 30))
    return step * rng.uniform(0.5, 1.0)


def note_health(session: Session, camera: Camera, note: str, now: datetime) -> None:
    """A row in the camera's health history that changes no state (from and to are its
    health now): a change in how it is sampled, such as the switch to a persistent reader."""
    session.add(CameraHealthEvent(camera_id=camera.id, from_health=camera.health, to_health=camera.health,
                                  reason=note[:1000], at=now))


def last_note(session: Session, camera_id: int) -> str | None:
    """The camera's newest note (see note_health), if any."""
    return session.scalar(
        sa.select(CameraHealthEvent.reason)
        .where(CameraHealthEvent.camera_id == camera_id, CameraHealthEvent.from_health == CameraHealthEvent.to_health)
        .order_by(CameraHealthEvent.id.desc()).limit(1)
    )


def set_health(session: Session, camera: Camera, to: CameraHealth, reason: str, now: datetime) -> bool:
    """Move ``camera`` to ``to``; store the transition. True when it changed."""
    if camera.health is to:
        return False
    session.add(CameraHealthEvent(camera_id=camera.id, from_health=camera.health, to_health=to, reason=reason[:1000], at=now))
    camera.health = to
    return True
