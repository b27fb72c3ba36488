"""A site's camera-hours: distinct (camera, clock hour) buckets holding at least one
usable frame (shadow.periods.usable_frame), each night when most of its frames are
``is_night``, as keys (camera id, hour, night) for shadow.alert_rates' exposures.

Three layers, so that the work of a guard pass (every minute per promoted site) does not
grow with the baseline and the period since promotion:

- **Kept** (``camera_hours``, migration 0021): the shadow loop's rollup
  (:func:`roll_camera_hours`, in the guard's lane) aggregates each closed clock hour of
  every camera once, up to its cursor (``shadow_cursors`` "camera_hours", in hours since
  the epoch), at most ``HOURS_PER_PASS`` hours a pass. A restarted process then reads a
  baseline's closed hours from here (a row per camera-hour) instead of its frames (12.9 s
  at the season bench's 10M frames), and frame retention, which deletes the frames but
  keeps the baseline's bear frames as evidence, no longer takes the baseline's hours away
  (the baseline's rate would rise and the guard would see the alert rate fall).
- **Cached**: each process keeps the closed hours it read per (site, span start, the
  site's cameras) and then reads only the hours closed since (shadow.closed_spans).
- **Read from frames**: a span's part hour at its start (a period starts mid-hour; the
  bucket is then that part's), the hours past the rollup's cursor, and the open hours.

An hour counts as closed ``SETTLED`` after it ended. A frame written later still into a
closed hour (old footage backfilled) is not counted once its hour is kept.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any, Unpack

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from bearwatch.db import upsert_insert, write_transaction
from bearwatch.partitions import at_least, frame_id_floor
from bearwatch.schema import Camera, CameraHour, Frame, ShadowCursor, Site
from shadow.closed_spans import SETTLED, ClosedSpans, FrameKey, as_utc, hour_of
from shadow.flag_cursor import open_cursor
from shadow.periods import hour_bucket, usable_frame

HOUR = timedelta(hours=1)
HOURS_PER_PASS = 6  # a rollup pass aggregates at most this many hours (catching up after an upgrade)
CURSOR = "camera_hours"
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def _as_position(hour: datetime) -> int:
    return int((hour - _EPOCH) // HOUR)


def _as_hour(position: int) -> datetime:
    return _EPOCH + position * HOUR


# --- read from frames --------------------------------------------------------------------

def _of_site_cameras(session: Session, site: Site, frames: sa.Select[Unpack[tuple[Any, ...]]]) -> sa.Select[Unpack[tuple[Any, ...]]]:
    """``frames`` (a select over frames, its columns labelled) kept to the site's cameras
    so that each camera's time window is one range scan of the (camera_id, captured_at)
    index: a LATERAL per camera on PostgreSQL (whose planner otherwise walks every site's
    frames by captured_at: frames arrive in time order, so that index looks cheaper), an
    IN on SQLite, which searches the index once per camera id."""
    cameras = sa.select(Camera.id).where(Camera.site_id == site.id)
    if session.get_bind().dialect.name != "postgresql":
        return frames.where(Frame.camera_id.in_(cameras.scalar_subquery()))
    site_cameras = cameras.subquery("site_cameras")
    of_camera = frames.where(Frame.camera_id == site_cameras.c.id).lateral("of_camera")
    return sa.select(*of_camera.c).select_from(site_cameras).join(of_camera, sa.true())


def _hour_counts(session: Session, start: datetime, end: datetime, site: Site | None) -> list[tuple[int, datetime, int, int]]:
    """(camera id, hour, usable frames, night frames among them) of each camera-hour with a
    usable frame captured in [start, end), of ``site``'s cameras or (None) of every
    camera. Aggregated in SQL: a row per camera-hour, not per frame."""
    if end <= start:
        return []
    bucket = hour_bucket(session, Frame.captured_at)
    night = sa.func.sum(sa.case((Frame.is_night.is_(True), 1), else_=0))
    query = (
        sa.select(Frame.camera_id.label("camera_id"), bucket.label("hour"), sa.func.count().label("frames"),
                  night.label("night"))
        .where(Frame.captured_at >= start, Frame.captured_at < end, usable_frame(),
               *at_least(frame_id_floor(session, start), Frame.id))
        .group_by(Frame.camera_id, bucket)
    )
    rows = session.execute(_of_site_cameras(session, site, query) if site is not None else query).all()
    return [(c, datetime.strptime(str(b)[:13], "%Y-%m-%d %H").replace(tzinfo=timezone.utc), int(k), int(n or 0))
            for c, b, k, n in rows]


def _key(camera_id: int, hour: datetime, frames: int, night: int) -> FrameKey:
    """A camera-hour's key: night when most of its usable frames are night frames."""
    return camera_id, hour, 2 * night > frames


def _read_hours(session: Session, site: Site, start: datetime, end: datetime) -> list[FrameKey]:
    """The site's camera-hour keys of [start, end), read from its frames."""
    return [_key(*counts) for counts in _hour_counts(session, start, end, site)]


# --- kept ------------------------------------------------------------------------------------

def kept_through(session: Session) -> datetime | None:
    """The hour up to which every camera's closed hours are kept (exclusive), or None."""
    position = session.scalar(sa.select(ShadowCursor.position).where(ShadowCursor.name == CURSOR))
    return _as_hour(position) if position else None


def _kept_hours(session: Session, site: Site, start: datetime, end: datetime) -> list[FrameKey]:
    """The site's kept camera-hour keys of the whole hours in [start, end)."""
    if end <= start:
        return []
    rows = session.execute(
        sa.select(CameraHour.camera_id, CameraHour.hour, CameraHour.frames, CameraHour.night_frames)
        .where(CameraHour.camera_id.in_(sa.select(Camera.id).where(Camera.site_id == site.id).scalar_subquery()),
               CameraHour.hour >= start, CameraHour.hour < end)
    ).all()
    return [_key(c, hour, frames, night) for c, hour, frames, night in rows]


def _closed_hours(session: Session, site: Site, start: datetime, end: datetime) -> list[FrameKey]:
    """The camera-hour keys of [start, end), ``end`` an hour boundary: the part hour at
    ``start`` from the frames, the whole hours from ``camera_hours`` as far as they are
    kept, the rest from the frames."""
    whole = hour_of(start) if start == hour_of(start) else hour_of(start) + HOUR
    if whole >= end:
        return _read_hours(session, site, start, end)
    kept = kept_through(session)
    upto = min(end, max(kept, whole)) if kept is not None else whole
    return [*_read_hours(session, site, start, whole), *_kept_hours(session, site, whole, upto),
            *_read_hours(session, site, upto, end)]


def roll_camera_hours(factory: sessionmaker[Session], now: datetime, *, hours: int = HOURS_PER_PASS) -> int:
    """The shadow loop's rollup: every camera's closed hours after the cursor, at most
    ``hours`` of them, into ``camera_hours``, and the cursor past them, in one write
    transaction (rows and cursor move together). Starts at the first frame's hour. Returns
    how many hours the cursor moved (0: caught up; hours without a frame move it too)."""
    closed = hour_of(as_utc(now) - SETTLED)
    with factory() as session:  # the read outside the write transaction (SQLite's lock)
        kept = kept_through(session)
        if kept is None:
            first = session.scalar(sa.select(sa.func.min(Frame.captured_at)))
            kept = hour_of(first) if first is not None else closed
        upto = min(closed, kept + hours * HOUR)
        if upto <= kept:
            return 0
        rows = _hour_counts(session, kept, upto, None)
    with write_transaction(factory) as session:
        cursor = open_cursor(session, CURSOR, now)
        if cursor.position and _as_hour(cursor.position) != kept:
            return 0  # another pass moved it meanwhile (a leader change): the next pass goes on from there
        if rows:
            session.execute(upsert_insert(session, CameraHour).on_conflict_do_nothing(), [
                {"camera_id": c, "hour": hour, "frames": frames, "night_frames": night} for c, hour, frames, night in rows])
        cursor.position, cursor.updated_at = _as_position(upto), now
    return int((upto - kept) // HOUR)


# --- cached ----------------------------------------------------------------------------------

# Per (database, site, the site's cameras) and span start: a camera moved in or out reads
# again. At most 500,000 camera-hours in all (~75 MB: a 90-day baseline of 50 cameras is
# 108,000); past that the least recently used are read again from camera_hours.
_CLOSED_HOURS = ClosedSpans(256, max_keys=500_000)


def clear_hours_cache() -> None:
    _CLOSED_HOURS.clear()


def site_hours(session: Session, site: Site, start: datetime, end: datetime) -> list[FrameKey]:
    """The site's camera-hour keys of [start, end): closed hours kept or cached, the
    open ones read from the frames."""
    cameras = tuple(session.scalars(sa.select(Camera.id).where(Camera.site_id == site.id).order_by(Camera.id)))
    return _CLOSED_HOURS.read((str(session.get_bind().engine.url), site.id, cameras), start, end,
                              closed=lambda a, b: _closed_hours(session, site, a, b),
                              fresh=lambda a, b: _read_hours(session, site, a, b))
