"""The live/stale/dark rule the live wall and the cameras page share, table by table."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from bearwatch.schema import CameraHealth
from dashboard.queries.cameras import CameraState, camera_state

NOW = datetime(2026, 6, 1, 3, 0, tzinfo=timezone.utc)


@pytest.mark.parametrize(
    ("enabled", "health", "age_s", "interval_s", "state"),
    [
        (True, CameraHealth.ONLINE, 4, 5, CameraState.LIVE),
        (True, CameraHealth.ONLINE, 29, 5, CameraState.LIVE),  # at least 30 s before stale
        (True, CameraHealth.ONLINE, 31, 5, CameraState.STALE),
        (True, CameraHealth.DEGRADED, 170, 60, CameraState.LIVE),  # 3 intervals of a slow camera
        (True, CameraHealth.DEGRADED, 190, 60, CameraState.STALE),
        (True, CameraHealth.UNKNOWN, None, 5, CameraState.DARK),  # never delivered
        (True, CameraHealth.OFFLINE, 2, 5, CameraState.DARK),  # ingest says offline
        (False, CameraHealth.ONLINE, 2, 5, CameraState.DISABLED),
        (False, CameraHealth.OFFLINE, None, 5, CameraState.DISABLED),
    ],
)
def test_camera_state(enabled: bool, health: CameraHealth, age_s: float | None, interval_s: float, state: CameraState) -> None:
    last = None if age_s is None else NOW - timedelta(seconds=age_s)
    assert camera_state(enabled=enabled, health=health, last_frame_at=last, interval_s=interval_s, now=NOW) is state
