"""A manual site's drift pass does not read its manual history again every hour (issue 13
item 1), on SQLite and PostgreSQL: its reference (the manual period, less the current
window) slides with the pass, so it is read by clock hour like the current window and
holds at most drift_reference_max_hours; a later pass reads the part hours at the
windows' ends, the same after 3 days in manual as after 9, and stores the numbers a
full read gives."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
import sqlalchemy as sa
from pydantic import ValidationError
from sqlalchemy.orm import Session, sessionmaker

from bearwatch.db import write_transaction
from bearwatch.park_file import Thresholds
from bearwatch.schema import DriftEvent, DriftKeptWindow, Frame, Site, Stage, StageChange
from shadow import drift_sampling, drift_windows
from shadow.drift import compute_drifts, store_drift_checks
from shadow.drift_sampling import WindowSpec
from shadow.drift_windows import CLOSED
from tests.shadow.helpers import Park, make_park
from tests.shadow.test_drift_hourly import _frames
from tests.statements import Sent, plan_nodes, rows_read, statements_sent

NOW = datetime(2026, 6, 21, 10, 30, tzinfo=timezone.utc)
HOUR, DAY = timedelta(hours=1), timedelta(days=1)
FRAMES_AN_HOUR = 2 * 60  # two cameras, a frame a minute
WINDOW, REFERENCE_MAX = timedelta(hours=24), timedelta(hours=Thresholds().drift_reference_max_hours)


pytestmark = pytest.mark.usefixtures("new_drift_process")


@pytest.fixture
def hours_read(monkeypatch: pytest.MonkeyPatch) -> dict[int, float]:
    """Per site: the hours of frames the statements of drift_sampling read (every one of them
    reads its frames through _window_frames: whole windows, clock hours, repeats)."""
    seen: dict[int, float] = {}
    window_frames = drift_sampling._window_frames

    def spy(specs: list[WindowSpec], **kwargs: Any) -> Any:
        for spec in specs:
            seen[spec.site_id] = seen.get(spec.site_id, 0.0) + (spec.end - spec.start) / HOUR
        return window_frames(specs, **kwargs)

    monkeypatch.setattr(drift_sampling, "_window_frames", spy)
    return seen


def _manual_park(factory: sessionmaker[Session], name: str, days: int, seed: int) -> Park:
    """A site in manual for ``days`` before NOW (its ledger row), a frame a minute per camera since."""
    park = make_park(factory, name=name, cameras=2)
    with factory.begin() as session:
        session.add(StageChange(site_id=park.site_id, from_stage=None, to_stage=Stage.MANUAL, actor="admin",
                                reason="created", model_version_id=park.model_id, changed_at=NOW - days * DAY))
    _frames(factory, park.cameras, park.model_id, NOW - days * DAY, NOW, seed=seed)
    return park


def _frame_rows_read(engine: sa.Engine, sent: list[Sent]) -> int:
    """PostgreSQL: the rows of frames that the reading statements' scans read (each run
    again under EXPLAIN ANALYZE). Predictions are left out: the embeddings of the samples
    are read by id, which the planner does with a scan of the whole (small) test table."""
    return sum(rows_read(plan_nodes(engine, s), ("frames",)) for s in sent if s.reads)


def _drift_pass(factory: sessionmaker[Session], park: Park, now: datetime) -> dict[str, Any]:
    """The drift pass of one site, as the shadow loop stores it; the metrics stored."""
    with factory() as session:
        checks = compute_drifts(session, list(session.scalars(sa.select(Site).where(Site.id == park.site_id))), now)
    with write_transaction(factory) as session:
        session.execute(sa.delete(DriftEvent))
        store_drift_checks(session, checks, now)
    with factory() as session:
        event = session.scalars(sa.select(DriftEvent)).one()
        assert event.reference_end - event.reference_start <= REFERENCE_MAX
        return event.metrics


def test_a_manual_sites_later_pass_reads_as_much_after_nine_days_as_after_three(
    engine: sa.Engine, factory: sessionmaker[Session], hours_read: dict[int, float], monkeypatch: pytest.MonkeyPatch,
) -> None:
    parks = {days: _manual_park(factory, f"manual-{days}d", days, seed=days) for days in (3, 9)}
    later = NOW + HOUR
    rows: dict[int, int] = {}
    spans: dict[int, float] = {}
    stored: dict[int, dict[str, Any]] = {}
    for days, park in parks.items():
        _drift_pass(factory, park, NOW)
        _frames(factory, park.cameras, park.model_id, NOW, later, seed=100 + days)  # the hour since
        hours_read.clear()
        with statements_sent(engine) as sent:
            stored[days] = _drift_pass(factory, park, later)
        assert stored[days], "compared"
        rows[days] = _frame_rows_read(engine, sent) if engine.dialect.name == "postgresql" else 0
        spans[days] = hours_read[park.site_id]
        # The part hours at the ends of the reference and the window, the hour that closed
        # since, and for the repeats (a frozen stream across an hour) each run of those
        # hours again from the hour before it: ten hours of frames or so, not the manual
        # period (2 and 8 days before the change).
        assert spans[days] <= 12, spans
        # A new process reads the reference's hours back from drift_kept_windows (kept for
        # as long as the reference reaches back, not two windows), not from the frames.
        drift_windows.clear_cache()
        hours_read.clear()
        assert _drift_pass(factory, park, later) == stored[days]
        assert hours_read[park.site_id] <= spans[days], (days, hours_read)

    # The same work after 9 days in manual as after 3 (on PostgreSQL: the rows the scans read).
    assert spans[9] == spans[3], spans
    assert abs(rows[9] - rows[3]) <= FRAMES_AN_HOUR and max(rows.values()) <= 12 * FRAMES_AN_HOUR, rows
    with factory() as session:  # the sliding reference is not kept as a window (a new key every pass)
        assert session.scalar(sa.select(sa.func.count()).select_from(DriftKeptWindow).where(DriftKeptWindow.kind == CLOSED)) == 0

    # The numbers a full read gives: every window read whole, from the frames (nothing kept).
    monkeypatch.setattr(drift_windows, "_merge", lambda *args: None)
    for days, park in parks.items():
        drift_windows.clear_cache()
        with factory.begin() as session:
            session.execute(sa.delete(DriftKeptWindow))
        assert _drift_pass(factory, park, later) == stored[days], days


def test_a_stream_frozen_across_an_hour_of_the_reference_counts_once_after_a_restart(
    factory: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch,
) -> None:
    park = _manual_park(factory, "manual", 3, seed=3)
    stuck = NOW - 2 * DAY + timedelta(minutes=20)  # 10:50 .. 11:20 two days ago, in the reference
    with factory.begin() as session:
        session.execute(sa.update(Frame).where(Frame.camera_id == park.cameras[0], Frame.captured_at >= stuck,
                                               Frame.captured_at < stuck + timedelta(minutes=30)).values(sha256="stuck"))
    first = _drift_pass(factory, park, NOW)
    drift_windows.clear_cache()  # a new process: the hours and their repeats from drift_kept_windows
    assert _drift_pass(factory, park, NOW) == first
    monkeypatch.setattr(drift_windows, "_merge", lambda *args: None)  # read whole
    drift_windows.clear_cache()
    assert _drift_pass(factory, park, NOW) == first


def test_the_reference_holds_the_last_drift_reference_max_hours_of_the_manual_period(
    factory: sessionmaker[Session], hours_read: dict[int, float],
) -> None:
    park = _manual_park(factory, "manual", 9, seed=1)
    with factory() as session:
        check = compute_drifts(session, [session.get_one(Site, park.site_id)], NOW)[0]
        assert check.reference == (NOW - WINDOW - REFERENCE_MAX, NOW - WINDOW)
    # Promoted a day ago: the end of its manual period, which no longer moves: read once, kept.
    promoted = NOW - DAY
    with factory.begin() as session:
        session.add(StageChange(site_id=park.site_id, from_stage=Stage.MANUAL, to_stage=Stage.LIMITED, actor="admin",
                                reason="promoted", model_version_id=park.model_id, changed_at=promoted))
        session.execute(sa.update(Site).where(Site.id == park.site_id).values(stage=Stage.LIMITED))
    for later in (NOW, NOW + HOUR):
        hours_read.clear()
        with factory() as session:
            check = compute_drifts(session, [session.get_one(Site, park.site_id)], later)[0]
        assert check.reference == (promoted - REFERENCE_MAX, promoted)
    assert hours_read[park.site_id] < 6, hours_read  # the second: the current window's part hours, not 7 days
    with factory() as session:
        # an admin's reference is kept as given, however long
        session.execute(sa.update(Site).where(Site.id == park.site_id)
                        .values(drift_reference_start=NOW - 9 * DAY, drift_reference_end=NOW - DAY))
        check = compute_drifts(session, [session.get_one(Site, park.site_id)], NOW)[0]
        assert check.reference == (NOW - 9 * DAY, NOW - DAY)


def test_a_reference_cap_shorter_than_the_window_is_refused() -> None:
    assert Thresholds(drift_window_hours=48, drift_reference_max_hours=48).drift_reference_max_hours == 48
    with pytest.raises(ValidationError, match="drift_reference_max_hours"):
        Thresholds(drift_window_hours=48, drift_reference_max_hours=24)
