"""Drift's kept windows in the database (drift_kept_windows, migration 0019), on SQLite and
PostgreSQL: a new process (``clear_cache``) gets the same drift numbers as the process
before it without reading the closed reference window or the current window's closed
hours from the frames again; a kept row of another format or that does not load is
ignored, counted and written anew; the pass deletes the rows no window needs any more;
and the migration goes up and down."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from prometheus_client import REGISTRY
from sqlalchemy.orm import Session, sessionmaker

from bearwatch.db import make_engine, write_transaction
from bearwatch.migrations import alembic_config
from bearwatch.schema import DriftEvent, DriftKeptWindow, Site
from shadow import drift_windows
from shadow.drift import compute_drifts, store_drift_checks
from shadow.drift_sampling import WindowSpec
from shadow.drift_windows import CLOSED, HOUR_PIECE, KEPT_FORMAT
from shadow.loop import run_drift_checks
from tests.shadow.helpers import Park, make_park
from tests.shadow.test_drift_hourly import _frames
from tests.statements import Sent, plan_nodes, rows_read, statements_sent

NOW = datetime(2026, 6, 21, 10, 30, tzinfo=timezone.utc)
REFERENCE = (NOW - timedelta(hours=40), NOW - timedelta(hours=30))  # ended long ago: closed
# The current window 10:30 .. 10:30: the part hour at its start, 23 closed hours (kept), the open hour.
CLOSED_HOURS = 23


@dataclass
class FromFrames:
    """What a pass read from the frames: windows read whole, pieces (clock hours) read."""

    whole: list[WindowSpec] = field(default_factory=list)
    pieces: list[WindowSpec] = field(default_factory=list)

    def restart(self) -> None:
        """A new process: nothing in memory, nothing read yet."""
        drift_windows.clear_cache()
        self.whole.clear()
        self.pieces.clear()


pytestmark = pytest.mark.usefixtures("new_drift_process")


@pytest.fixture
def from_frames(monkeypatch: pytest.MonkeyPatch) -> FromFrames:
    seen = FromFrames()
    sample_query, read_pieces = drift_windows.sample_query, drift_windows._read_pieces

    def whole(specs: Any, *args: Any, **kwargs: Any) -> Any:
        seen.whole += specs
        return sample_query(specs, *args, **kwargs)

    def pieces(session: Session, specs: Any, *args: Any) -> Any:
        seen.pieces += specs
        return read_pieces(session, specs, *args)

    monkeypatch.setattr(drift_windows, "sample_query", whole)
    monkeypatch.setattr(drift_windows, "_read_pieces", pieces)
    return seen


def _park(factory: sessionmaker[Session]) -> Park:
    park = make_park(factory, cameras=3)
    _frames(factory, park.cameras, park.model_id, REFERENCE[0], NOW, seed=7)
    with factory.begin() as session:
        session.execute(sa.update(Site).values(drift_reference_start=REFERENCE[0], drift_reference_end=REFERENCE[1]))
    return park


def _drift_pass(factory: sessionmaker[Session], now: datetime = NOW) -> dict[str, Any]:
    """A drift pass of the shadow loop; the metrics it stored."""
    with factory.begin() as session:
        session.execute(sa.delete(DriftEvent))
    run_drift_checks(factory, now)
    with factory() as session:
        return session.scalars(sa.select(DriftEvent.metrics)).one()


def _kept(factory: sessionmaker[Session]) -> dict[str, list[tuple[datetime, datetime]]]:
    with factory() as session:
        rows = session.execute(sa.select(DriftKeptWindow.kind, DriftKeptWindow.window_start, DriftKeptWindow.window_end)
                               .order_by(DriftKeptWindow.window_start)).all()
    return {kind: [(r.window_start, r.window_end) for r in rows if r.kind == kind] for kind in (CLOSED, HOUR_PIECE)}


def _frame_rows_read(engine: sa.Engine, sent: list[Sent]) -> int:
    """PostgreSQL: the rows of frames and predictions that the reading statements scan
    (each run again under EXPLAIN ANALYZE)."""
    return sum(rows_read(plan_nodes(engine, s), ("frames", "predictions")) for s in sent if s.reads)


def test_a_new_process_reads_the_kept_windows_not_the_frames(
    engine: sa.Engine, factory: sessionmaker[Session], from_frames: FromFrames,
) -> None:
    _park(factory)
    with statements_sent(engine) as cold:  # nothing kept yet: every window and hour from the frames
        first = _drift_pass(factory)
    assert len(from_frames.whole) == 1 and len(from_frames.pieces) == CLOSED_HOURS + 2
    assert first and len(_kept(factory)[CLOSED]) == 1 and len(_kept(factory)[HOUR_PIECE]) == CLOSED_HOURS

    from_frames.restart()  # the shadow loop restarted
    with statements_sent(engine) as restarted:
        assert _drift_pass(factory) == first  # the same numbers, to the last digit
    # Neither the reference nor a closed hour from the frames: the part hour at the window's start and the open hour.
    assert from_frames.whole == []
    assert [(p.start, p.end) for p in from_frames.pieces] == [(NOW - timedelta(hours=24), NOW - timedelta(hours=23.5)),
                                                             (NOW - timedelta(minutes=30), NOW)]
    if engine.dialect.name == "postgresql":
        with statements_sent(engine) as later:  # the same process's next pass
            _drift_pass(factory)
        # The restarted process's first pass reads what any later pass reads; without the kept rows, twice that here.
        rows = [_frame_rows_read(engine, sent) for sent in (cold, restarted, later)]
        assert rows[1] == rows[2] and rows[0] > 2 * rows[1], rows


def test_a_kept_row_of_another_format_or_unreadable_is_read_from_the_frames_again(
    factory: sessionmaker[Session], from_frames: FromFrames, caplog: pytest.LogCaptureFixture,
) -> None:
    _park(factory)
    first = _drift_pass(factory)
    hour = (datetime(2026, 6, 21, 5, tzinfo=timezone.utc), datetime(2026, 6, 21, 6, tzinfo=timezone.utc))
    with factory.begin() as session:
        session.execute(sa.update(DriftKeptWindow).where(DriftKeptWindow.kind == CLOSED).values(format=KEPT_FORMAT + 1))
        broken = session.execute(sa.update(DriftKeptWindow).where(DriftKeptWindow.window_start == hour[0])
                                  .values(payload=b"\x93NUMPY not really"))
        assert broken.rowcount == 1
    ignored_before = REGISTRY.get_sample_value("bearwatch_drift_kept_ignored_total") or 0.0

    from_frames.restart()
    with caplog.at_level(logging.WARNING, logger="shadow.drift_windows"):
        assert _drift_pass(factory) == first
    assert len(from_frames.whole) == 1  # the reference again
    assert hour in [(p.start, p.end) for p in from_frames.pieces] and len(from_frames.pieces) == 3
    assert "2 kept windows ignored" in caplog.text
    assert REGISTRY.get_sample_value("bearwatch_drift_kept_ignored_total") == ignored_before + 2

    # Written anew: the next process reads them back.
    from_frames.restart()
    assert _drift_pass(factory) == first
    assert from_frames.whole == [] and len(from_frames.pieces) == 2


def test_the_pass_deletes_the_hours_past_two_windows_and_a_superseded_reference(factory: sessionmaker[Session]) -> None:
    park = _park(factory)
    _drift_pass(factory)
    hours = _kept(factory)[HOUR_PIECE]
    assert len(hours) == CLOSED_HOURS
    later = NOW + timedelta(hours=30)  # twice the 24 h window reaches back to NOW - 18 h
    with factory.begin() as session:  # a new reference window chosen by ops
        session.execute(sa.update(Site).where(Site.id == park.site_id)
                        .values(drift_reference_start=REFERENCE[0] + timedelta(hours=1)))
    drift_windows.clear_cache()
    with factory() as session:
        checks = compute_drifts(session, list(session.scalars(sa.select(Site))), later)
    with write_transaction(factory) as session:
        store_drift_checks(session, checks, later)
    kept = _kept(factory)
    assert [h for h in kept[HOUR_PIECE] if h[1] <= NOW] == [h for h in hours if h[1] >= NOW - timedelta(hours=18)]
    assert len([h for h in kept[HOUR_PIECE] if h[1] <= NOW]) < len(hours)
    assert kept[CLOSED] == [(REFERENCE[0] + timedelta(hours=1), REFERENCE[1])]  # the old reference's row is gone


def test_the_migration_adds_the_table_and_goes_back(database_url: str) -> None:
    config = alembic_config(database_url)
    command.upgrade(config, "0018")
    engine = make_engine(database_url)
    try:
        assert "drift_kept_windows" not in sa.inspect(engine).get_table_names()
        command.upgrade(config, "0019")
        engine.dispose()
        assert "drift_kept_windows" in sa.inspect(engine).get_table_names()
        command.downgrade(config, "0018")
        engine.dispose()
        assert "drift_kept_windows" not in sa.inspect(engine).get_table_names()
        command.upgrade(config, "head")
    finally:
        engine.dispose()
