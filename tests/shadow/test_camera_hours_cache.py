"""The guard's and gates' camera-hours (shadow.alert_rates) read each closed clock hour once
per process: a pass reads only the hours since the last closed one, not the whole period
since promotion and the baseline again, and gives the same exposure as a fresh read while
frames keep arriving. Both databases; the work bound on PostgreSQL (shared buffers)."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from bearwatch.schema import Frame, FrameStatus, Site
from shadow.alert_rates import Exposure, clear_hours_cache, current_exposure
from tests.shadow.helpers import at, make_park
from tests.statements import buffers_touched, statements_sent

EVERY = timedelta(minutes=1)


def _frames(factory: sessionmaker[Session], cameras: tuple[int, ...], start: datetime, end: datetime) -> None:
    """A frame a minute per camera in [start, end); night from 20:00 to 06:00, a dark
    frame (not usable) every 7th minute on the first camera."""
    rows = []
    t = start
    while t < end:
        for cam in cameras:
            dark = cam == cameras[0] and int(t.timestamp() // 60) % 7 == 0
            rows.append({"camera_id": cam, "captured_at": t, "path": f"{cam}/{t:%Y%m%d%H%M}.jpg", "sha256": "0" * 64,
                         "size_bytes": 1, "width": 1, "height": 1, "status": FrameStatus.SCORED,
                         "brightness": 2.0 if dark else 120.0, "contrast": 30.0, "is_night": not 6 <= t.hour < 20})
        t += EVERY
    with factory.begin() as session:
        session.execute(sa.insert(Frame), rows)


def _exposure(factory: sessionmaker[Session], site_id: int, start: datetime, end: datetime) -> Exposure:
    with factory() as session:
        site = session.get(Site, site_id)
        assert site is not None
        return current_exposure(session, site, start, end, gap_s=0.0)


def _fresh(factory: sessionmaker[Session], site_id: int, start: datetime, end: datetime) -> Exposure:
    clear_hours_cache()
    try:
        return _exposure(factory, site_id, start, end)
    finally:
        clear_hours_cache()


def test_cached_hours_match_a_fresh_read_as_frames_keep_arriving(factory: sessionmaker[Session]) -> None:
    park = make_park(factory, cameras=2)
    promoted = at(0) + timedelta(minutes=17)  # mid-hour, like a real promotion
    _frames(factory, park.cameras, at(0), at(0) + timedelta(days=2))
    clear_hours_cache()
    end = at(0) + timedelta(days=2)
    for step in range(6):  # the guard's passes: a minute (or an hour) later, new frames in between
        later = end + (timedelta(hours=1) if step == 3 else EVERY)
        _frames(factory, park.cameras, end, later)
        end = later
        cached = _exposure(factory, park.site_id, promoted, end)
        assert cached == _fresh(factory, park.site_id, promoted, end), f"pass {step}"
        _exposure(factory, park.site_id, promoted, end)  # fills the cache again for the next pass
    # A question about an earlier end (a dashboard range) uses the hours in hand and still agrees.
    earlier = at(0) + timedelta(hours=30, minutes=5)
    assert _exposure(factory, park.site_id, promoted, earlier) == _fresh(factory, park.site_id, promoted, earlier)
    assert _exposure(factory, park.site_id, promoted, end).hours > 2 * 48 - 8  # about 2 cameras x 48 h

    # A camera moved into the site: its hours count at once (the cache is per set of cameras).
    other = make_park(factory, name="south", cameras=1)
    _frames(factory, other.cameras, at(0), end)
    before = _exposure(factory, park.site_id, promoted, end)
    with factory.begin() as session:
        session.execute(sa.text("UPDATE cameras SET site_id = :s, name = :n WHERE id = :c"),
                        {"s": park.site_id, "n": "moved", "c": other.cameras[0]})
    moved = _exposure(factory, park.site_id, promoted, end)
    assert moved.hours > before.hours
    assert moved == _fresh(factory, park.site_id, promoted, end)


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_guard_pass_reads_only_the_hours_since_the_last_closed_one(
    engine: sa.Engine, factory: sessionmaker[Session],
) -> None:
    park = make_park(factory, cameras=2)
    end = at(0) + timedelta(days=4)
    _frames(factory, park.cameras, at(0), end)
    with engine.begin() as conn:
        conn.execute(sa.text("ANALYZE frames"))
    clear_hours_cache()
    with statements_sent(engine) as first:
        _exposure(factory, park.site_id, at(0), end)
    with statements_sent(engine) as later:  # the next minute's pass
        _exposure(factory, park.site_id, at(0), end + EVERY)
    cold, warm = buffers_touched(engine, first), buffers_touched(engine, later)
    assert warm * 5 < cold, f"the next pass touched {warm} buffers, the first {cold}"
