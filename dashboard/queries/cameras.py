"""Camera health for the Cameras page, and the live/stale/dark rule the live wall shares."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session

from bearwatch.redact import redact_text, redact_url
from bearwatch.schema import Camera, CameraHealth, Site

# A camera is stale when its newest frame is older than this many sampling intervals
# (and at least STALE_MIN_S): a few missed samples are normal, a run of them is not.
STALE_AFTER_INTERVALS = 3
STALE_MIN_S = 30.0


class CameraState(str, enum.Enum):
    LIVE = "live"
    STALE = "stale"  # frames stopped arriving recently
    DARK = "dark"  # never delivered a frame, or ingest marked it offline
    DISABLED = "disabled"  # switched off by an admin


def camera_state(
    *, enabled: bool, health: CameraHealth, last_frame_at: datetime | None, interval_s: float, now: datetime
) -> CameraState:
    if not enabled:
        return CameraState.DISABLED
    if last_frame_at is None or health is CameraHealth.OFFLINE:
        return CameraState.DARK
    if (now - last_frame_at).total_seconds() > max(STALE_AFTER_INTERVALS * interval_s, STALE_MIN_S):
        return CameraState.STALE
    return CameraState.LIVE


@dataclass(frozen=True)
class CameraRow:
    camera_id: int
    site: str
    camera: str
    source: str  # redacted
    interval_s: float
    enabled: bool
    health: CameraHealth
    state: CameraState
    last_frame_at: datetime | None
    last_frame_age_s: float | None
    consecutive_failures: int
    last_error: str | None  # redacted


def camera_health(session: Session, *, now: datetime, site: str | None = None) -> tuple[CameraRow, ...]:
    """Every camera (of one site, or all), worst first: dark, stale, disabled, live."""
    query = (
        sa.select(
            Camera.id, Site.name, Camera.name, Camera.source, Camera.interval_s, Camera.enabled, Camera.health,
            Camera.last_frame_at, Camera.consecutive_failures, Camera.last_error,
        )
        .join(Site, Site.id == Camera.site_id)
        .order_by(Site.name, Camera.name)
    )
    if site is not None:
        query = query.where(Site.name == site)
    rows = []
    for r in session.execute(query):
        state = camera_state(enabled=r.enabled, health=r.health, last_frame_at=r.last_frame_at,
                             interval_s=r.interval_s, now=now)
        rows.append(CameraRow(
            camera_id=r.id, site=r[1], camera=r[2], source=redact_url(r.source), interval_s=r.interval_s,
            enabled=r.enabled, health=r.health, state=state, last_frame_at=r.last_frame_at,
            last_frame_age_s=(now - r.last_frame_at).total_seconds() if r.last_frame_at else None,
            consecutive_failures=r.consecutive_failures,
            last_error=redact_text(r.last_error) if r.last_error else None,
        ))
    order = {CameraState.DARK: 0, CameraState.STALE: 1, CameraState.DISABLED: 2, CameraState.LIVE: 3}
    return tuple(sorted(rows, key=lambda row: order[row.state]))
