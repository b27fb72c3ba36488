"""The guard's and gates' camera-hours (shadow.camera_hours) read each closed clock hour once
per process: a pass reads only the hours since the last closed one, not the whole period
since promotion and the baseline again, and gives the same exposure as a fresh read while
frames keep arriving. The shadow loop's rollup keeps closed hours in the database: a
restarted process reads them instead of the frames, and frame retention does not take them
away. Both databases; the work bounds on PostgreSQL (shared buffers)."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from bearwatch.schema import CameraHour, Frame, FrameStatus, ShadowCursor, Site
from shadow.alert_rates import Exposure, current_exposure
from shadow.camera_hours import HOURS_PER_PASS, clear_hours_cache, kept_through, roll_camera_hours
from tests.partitions import partitions_of
from tests.shadow.helpers import add_user, at, make_park
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


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_the_baseline_bear_frames_are_read_from_the_bear_verdicts_not_from_every_frame(
    engine: sa.Engine, factory: sessionmaker[Session],
) -> None:
    """The guard reads a baseline's bear frames every minute per promoted site. It read every
    frame of the baseline joined to its verdicts (8.4M frames a pass at the season bench's
    10M, 26 s); now a baseline, however long, costs its bear frames."""
    from bearwatch.schema import Decision, User, Verdict
    from shadow.alert_rates import bear_frames

    park = make_park(factory, cameras=2)
    add_user(factory, "ana")
    add_user(factory, "bo")
    day = timedelta(days=1)
    _frames(factory, park.cameras, at(0), at(0) + day)
    with factory.begin() as session:
        ana, bo = (session.scalar(sa.select(User.id).where(User.name == n)) for n in ("ana", "bo"))
        frames = session.scalars(sa.select(Frame.id).order_by(Frame.id).limit(40)).all()
        verdicts = [(frames[0], ana, Verdict.CONFIRM), (frames[5], ana, Verdict.MISSED),  # bears
                    (frames[9], ana, Verdict.CONFIRM), (frames[9], bo, Verdict.DISMISS),  # split: not a bear
                    (frames[20], ana, Verdict.DISMISS)]
        session.execute(sa.insert(Decision), [{"frame_id": f, "reviewer_id": u, "verdict": v, "decided_at": at(0) + day}
                                              for f, u, v in verdicts])

    def read(end: datetime) -> tuple[list[int], int]:
        with engine.begin() as conn:
            conn.execute(sa.text("ANALYZE frames; ANALYZE frame_votes"))
        with statements_sent(engine) as sent, factory() as session:
            site = session.get(Site, park.site_id)
            assert site is not None
            found = bear_frames(session, site, at(0), end)
        with factory() as session:
            ids = session.scalars(sa.select(Frame.id).where(sa.tuple_(Frame.camera_id, Frame.captured_at).in_(
                [(c, t) for c, t, _ in found])).order_by(Frame.id)).all()
        return list(ids), buffers_touched(engine, sent)

    one_day, short = read(at(0) + day)
    assert one_day == [frames[0], frames[5]]
    _frames(factory, park.cameras, at(0) + day, at(0) + 4 * day)
    four_days, long = read(at(0) + 4 * day)
    assert four_days == one_day
    # the index of frames with a bear vote, and the few frames' own rows (is_night): about 10
    # buffers for either baseline; reading the frames of the day took 267 here
    assert max(short, long) <= 24, f"a baseline of 1 day touched {short} buffers, of 4 days {long}"


def _roll_all(factory: sessionmaker[Session], now: datetime, hours: int = HOURS_PER_PASS) -> list[int]:
    """The rollup's passes until it has caught up: the hours each moved on."""
    passes: list[int] = []
    while written := roll_camera_hours(factory, now, hours=hours):
        passes.append(written)
        assert len(passes) < 100
    return passes


def _forget_kept(factory: sessionmaker[Session]) -> None:
    with factory.begin() as session:
        session.execute(sa.delete(ShadowCursor).where(ShadowCursor.name == "camera_hours"))


def test_kept_hours_give_the_exposure_the_frames_give(factory: sessionmaker[Session]) -> None:
    """The rollup keeps every camera's closed hours, a bounded share a pass, up to the last
    settled hour; an exposure read from the kept hours (a restarted process) is the one read
    from the frames, for spans that start mid-hour, cross night and day and hold dark frames."""
    park = make_park(factory, cameras=2)
    end = at(0) + timedelta(days=2, minutes=25)
    _frames(factory, park.cameras, at(0), end)
    passes = _roll_all(factory, end)
    # 48 closed hours (the hour that ended 25 min ago is settled), 6 hours a pass
    assert passes == [6] * 8, passes
    with factory() as session:
        assert kept_through(session) == at(0) + timedelta(days=2)
        assert session.scalar(sa.select(sa.func.count()).select_from(CameraHour)) == 96
    spans = [(at(0), end), (at(0) + timedelta(minutes=17), end), (at(0) + timedelta(hours=5, minutes=59), end - timedelta(hours=3)),
             (at(0) + timedelta(hours=30), at(0) + timedelta(hours=30, minutes=40))]
    kept = [_fresh(factory, park.site_id, start, stop) for start, stop in spans]
    _forget_kept(factory)
    assert kept == [_fresh(factory, park.site_id, start, stop) for start, stop in spans]
    assert kept[1].night_hours > 0 and kept[1].day_hours > 0


def test_hours_without_frames_do_not_stop_the_rollup(factory: sessionmaker[Session]) -> None:
    """A park dark for half a day: the rollup moves past the empty hours and keeps the hours
    after them (a pass that wrote nothing is not the end)."""
    park = make_park(factory, cameras=2)
    _frames(factory, park.cameras, at(0), at(0) + timedelta(hours=3))
    _frames(factory, park.cameras, at(0) + timedelta(hours=15), at(0) + timedelta(hours=18))
    assert _roll_all(factory, at(0) + timedelta(hours=18, minutes=20)) == [6, 6, 6]
    with factory() as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(CameraHour)) == 2 * 6


def test_frame_retention_leaves_the_kept_hours(factory: sessionmaker[Session], tmp_path: Path) -> None:
    """Retention deletes the frames nobody reviewed; the period's camera-hours stay (before,
    they shrank to the hours that still held a frame)."""
    from ingest.store import FrameStore
    from ingest.sweeper import retain

    park = make_park(factory, cameras=2)
    end = at(0) + timedelta(days=3)
    partitions_of(factory, 2 * 2 * 24 * 60)  # PostgreSQL: the first two days' frames apart, as a park's days
    _frames(factory, park.cameras, at(0), end)
    _roll_all(factory, end)
    before = _fresh(factory, park.site_id, at(0), end)
    report = retain(factory, FrameStore(tmp_path), days=1, now=end)
    assert report.frames_deleted > 2 * 60 * 24  # two days of two cameras' frames
    assert _fresh(factory, park.site_id, at(0), end) == before
    assert before.hours >= 2 * 72 - 1


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_restarted_process_reads_the_kept_hours_not_the_frames(engine: sa.Engine, factory: sessionmaker[Session]) -> None:
    """A process's first guard pass read the baseline's frames (12.9 s at the season bench's
    10M frames, after every restart); with the hours kept it reads a row per camera-hour."""
    park = make_park(factory, cameras=2)
    end = at(0) + timedelta(days=4)
    _frames(factory, park.cameras, at(0), end)
    _roll_all(factory, end)
    with engine.begin() as conn:
        conn.execute(sa.text("ANALYZE frames; ANALYZE camera_hours"))

    def first_pass() -> int:
        clear_hours_cache()
        with statements_sent(engine) as sent:
            _exposure(factory, park.site_id, at(0) + timedelta(minutes=17), end)
        return buffers_touched(engine, sent)

    kept = first_pass()
    _forget_kept(factory)
    frames = first_pass()
    assert kept * 5 < frames, f"kept hours: {kept} buffers, frames: {frames}"


def test_a_guard_pass_reads_only_the_alerts_since_the_last_closed_hour(
    factory: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The guard's current exposure read every alert since promotion each minute (about
    1,800 a site at the season bench's 10M frames, each joined to its frame); a process now
    reads a closed hour's alerts once, and its keys are those a fresh read gives."""
    from bearwatch.schema import Alert, AlertStatus, Stage
    from shadow import alert_rates

    park = make_park(factory, cameras=2, stage=Stage.EXPANDED)
    end = at(0) + timedelta(days=1)
    _frames(factory, park.cameras, at(0), end + timedelta(hours=2))
    with factory() as session:
        frame_of = {(c, t): i for i, c, t in session.execute(sa.select(Frame.id, Frame.camera_id, Frame.captured_at))}

    def alerts(first: datetime, last: datetime) -> None:
        with factory.begin() as session:
            t = first
            while t < last:
                camera = park.cameras[int(t.timestamp()) // 600 % 2]
                session.add(Alert(site_id=park.site_id, camera_id=camera, frame_id=frame_of[(camera, t)], stage=Stage.EXPANDED,
                                  status=AlertStatus.SENT, idempotency_key=f"k{t.timestamp()}", created_at=t))
                t += timedelta(minutes=10)

    alerts(at(0), end)  # 144 alerts in the first day
    read: list[int] = []
    real = alert_rates._read_alert_keys

    def counting(session: Session, site: Site, start: datetime, stop: datetime) -> list:  # type: ignore[type-arg]
        keys = real(session, site, start, stop)
        read.append(len(keys))
        return keys

    monkeypatch.setattr(alert_rates, "_read_alert_keys", counting)
    alert_rates.clear_alerts_cache()

    def keys(stop: datetime) -> list:  # type: ignore[type-arg]
        with factory() as session:
            site = session.get(Site, park.site_id)
            assert site is not None
            return sorted(alert_rates.alert_keys(session, site, at(0), stop))

    first = keys(end)
    assert len(first) == 144 and sum(read) == 144
    for step in range(1, 4):  # the next passes, a new alert every 10 minutes
        alerts(end + timedelta(minutes=10 * (step - 1)), end + timedelta(minutes=10 * step))
        read.clear()
        cached = keys(end + timedelta(minutes=10 * step))
        assert sum(read) <= 7, read  # the hour not yet closed, not the day before
        alert_rates.clear_alerts_cache()
        assert cached == keys(end + timedelta(minutes=10 * step))  # a fresh read agrees
