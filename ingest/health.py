"""Camera health: the policy (pure), reconnect backoff, and stored transitions.

online: the last sample was stored. degraded: fewer than OFFLINE_AFTER failures in a
row. offline: OFFLINE_AFTER or more. disabled: switched off by an admin. Every change
is a row in camera_health_events (it feeds drift views and the rollout guard).
"""

from __future__ import annotations

import random
from datetime import datetime

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


def set_health(session: Session, camera: Camera, to: CameraHealth, reason: str, now: datetime) -> bool:
    """Move ``camera`` to ``to``; store the transition. True when it changed."""
    if camera.health is to:
        return False
    session.add(CameraHealthEvent(camera_id=camera.id, from_health=camera.health, to_health=to, reason=reason[:1000], at=now))
    camera.health = to
    return True
