"""Drift's current window read by clock hour (shadow.drift_windows, ``WindowSpec.hourly``), on
SQLite and PostgreSQL: the same counts, sample and embeddings as reading it whole, pass
after pass, with a frozen camera, dark frames, an offline camera, frames still waiting for
a score and an hour closing between passes; and a later pass reads far less."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from bearwatch.schema import Camera, CameraHealth, Frame, FrameStatus, Prediction
from shadow import drift_windows
from shadow.drift_sampling import WindowSpec
from shadow.drift_windows import WindowData, read_windows
from tests.shadow.helpers import make_park
from tests.statements import buffers_touched, statements_sent

START = datetime(2026, 6, 20, 4, 40, tzinfo=timezone.utc)  # night until 06:00 (a window across both strata)
SAMPLE, EMBEDDED = 40, 9  # small samples: the hours hold more than a sample's worth


def _frames(factory: sessionmaker[Session], cameras: tuple[int, ...], model_id: int, start: datetime, end: datetime,
            seed: int, *, frozen: int | None = None, status: FrameStatus = FrameStatus.SCORED) -> None:
    """A frame a minute per camera in [start, end): camera ``frozen`` repeats one image
    within each clock hour; every 7th frame dark, every 11th without a day/night, every
    5th unscored (no prediction)."""
    rng = np.random.default_rng(seed)
    frames: list[dict[str, Any]] = []
    scored: list[int] = []
    with factory.begin() as session:
        first = (session.scalar(sa.select(sa.func.max(Frame.id))) or 0) + 1
        if session.get_bind().dialect.name == "postgresql":  # explicit ids: move the sequence past them
            session.execute(sa.text("SELECT setval(pg_get_serial_sequence('frames', 'id'), :n)"), {"n": first + 100_000})
        at = start
        while at < end:
            for camera in cameras:
                i = first + len(frames)
                sha = f"frozen-{camera}-{at:%H}" if camera == frozen else f"{seed}-{i}"
                night = None if i % 11 == 0 else at.hour < 6
                frames.append({"id": i, "camera_id": camera, "captured_at": at, "path": f"{camera}/{i}.jpg", "sha256": sha,
                               "size_bytes": 1000, "width": 32, "height": 24, "contrast": 30.0, "is_night": night,
                               "brightness": 3.0 if i % 7 == 0 else float(rng.normal(40 if night else 120, 10)),
                               "sharpness": float(rng.normal(50, 5)), "status": status})
                if i % 5 and status is FrameStatus.SCORED:
                    scored.append(i)
            at += timedelta(minutes=1)
        session.execute(sa.insert(Frame), frames)
        if not scored:
            return
        session.execute(sa.insert(Prediction), [
            {"frame_id": i, "model_version_id": model_id, "probabilities": {"bear": s, "empty": 1 - s}, "positive_score": s,
             "flagged": s > 0.8, "ood_score": None if i % 13 == 0 else float(abs(rng.normal(0.8, 0.4))),
             "embedding": rng.normal(size=8).astype(np.float16).tobytes()}
            for i, s in ((i, float(rng.random())) for i in scored)])


def _read(factory: sessionmaker[Session], spec: WindowSpec) -> WindowData:
    with factory() as session:
        return read_windows(session, [spec], sample_frames=SAMPLE, sample_embeddings=EMBEDDED)[0]


def _assert_same(hourly: WindowData, whole: WindowData) -> None:
    assert hourly.counts == whole.counts
    for name in ("brightness", "sharpness", "night", "scores", "flagged", "ood", "embeddings"):
        assert np.array_equal(getattr(hourly, name), getattr(whole, name)), name
    assert len(whole.brightness) > SAMPLE // 2 and len(whole.embeddings) > EMBEDDED // 2  # a real sample


@pytest.fixture(autouse=True)
def _no_cache() -> None:
    drift_windows.clear_cache()


def test_the_current_window_by_hour_is_the_window_read_whole(factory: sessionmaker[Session]) -> None:
    park = make_park(factory, cameras=3)
    cameras = park.cameras
    _frames(factory, cameras, park.model_id, START, START + timedelta(hours=5, minutes=2), seed=1, frozen=cameras[2])

    def check(now: datetime) -> int:
        """The pass at ``now`` over the last 5 hours; returns the hours kept so far."""
        spec = WindowSpec(park.site_id, park.model_id, now - timedelta(hours=5), now, seed=park.site_id)
        _assert_same(_read(factory, replace(spec, hourly=True)), _read(factory, spec))
        return len(drift_windows._PIECES)

    # 04:42..09:42: a part hour, four hours that ended 5 minutes ago or more (kept), the open hour
    assert check(START + timedelta(hours=5, minutes=2)) == 4
    _frames(factory, cameras, park.model_id, START + timedelta(hours=5, minutes=2), START + timedelta(hours=5, minutes=20),
            seed=2, frozen=cameras[2])
    waiting = START + timedelta(hours=5, minutes=20), START + timedelta(hours=6, minutes=20)  # 10:00..11:00
    _frames(factory, cameras[:1], park.model_id, *waiting, seed=3, status=FrameStatus.PENDING)
    _frames(factory, cameras[1:], park.model_id, *waiting, seed=4)
    # 06:10..11:10: 09:00 closed between the passes; 10:00 still has frames waiting for a score
    assert check(START + timedelta(hours=6, minutes=30)) == 5
    with factory.begin() as session:
        session.execute(sa.update(Frame).where(Frame.status == FrameStatus.PENDING).values(status=FrameStatus.SCORED))
    assert check(START + timedelta(hours=6, minutes=30)) == 6
    # A camera going offline: its frames leave the window; the hours are read again.
    with factory.begin() as session:
        session.execute(sa.update(Camera).where(Camera.id == cameras[1]).values(health=CameraHealth.OFFLINE))
    assert check(START + timedelta(hours=6, minutes=30)) == 10


def test_an_image_in_two_hours_counts_once_as_when_read_whole(factory: sessionmaker[Session],
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    park = make_park(factory, cameras=2)
    _frames(factory, park.cameras, park.model_id, START, START + timedelta(hours=3), seed=4)
    with factory.begin() as session:  # a frozen camera across 06:00: the same bytes on both sides
        session.execute(sa.update(Frame).where(Frame.camera_id == park.cameras[0],
                                               Frame.captured_at >= START + timedelta(minutes=15),
                                               Frame.captured_at < START + timedelta(minutes=30)).values(sha256="stuck"))
    spec = WindowSpec(park.site_id, park.model_id, START, START + timedelta(hours=3), seed=park.site_id)
    merged = _merges(monkeypatch)
    _assert_same(_read(factory, replace(spec, hourly=True)), _read(factory, spec))
    assert merged == [True]  # from the hours, less the copy at 05:00 (first in its hour, not in the window)


def test_a_stream_repeating_every_hour_reads_the_window_whole(factory: sessionmaker[Session],
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    park = make_park(factory, cameras=2)
    _frames(factory, park.cameras, park.model_id, START, START + timedelta(hours=3), seed=6)
    with factory.begin() as session:  # camera 0 replays the same hour of images every hour
        for frame_id, at in session.execute(sa.select(Frame.id, Frame.captured_at).where(Frame.camera_id == park.cameras[0])):
            session.execute(sa.update(Frame).where(Frame.id == frame_id).values(sha256=f"minute-{at:%M}"))
    spec = WindowSpec(park.site_id, park.model_id, START, START + timedelta(hours=3), seed=park.site_id)
    merged = _merges(monkeypatch)
    _assert_same(_read(factory, replace(spec, hourly=True)), _read(factory, spec))
    assert merged == [False]  # an hour's first 40 frames cannot stand in for its 60 repeats: read whole


def _merges(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Whether each window read by hour was merged from its hours (else read whole)."""
    merged: list[bool] = []
    merge = drift_windows._merge

    def spy(*args: Any) -> Any:
        result = merge(*args)
        merged.append(result is not None)
        return result

    monkeypatch.setattr(drift_windows, "_merge", spy)
    return merged


def test_a_later_pass_reads_only_the_open_hour(factory: sessionmaker[Session], engine: sa.Engine) -> None:
    park = make_park(factory, cameras=3)
    now = START + timedelta(hours=8, minutes=30)
    _frames(factory, park.cameras, park.model_id, START, now, seed=5)
    spec = WindowSpec(park.site_id, park.model_id, now - timedelta(hours=8), now, seed=park.site_id, hourly=True)

    def one_pass() -> int:
        """The database's work for the pass's reads: on PostgreSQL the shared buffers they
        touch (EXPLAIN), on SQLite thousands of virtual-machine steps (its progress handler)."""
        with statements_sent(engine) as sent, factory() as session:
            raw = session.connection().connection.driver_connection
            steps: list[int] = []
            if engine.dialect.name == "sqlite":
                raw.set_progress_handler(lambda: steps.append(1) and 0, 1000)
            try:
                read_windows(session, [spec], sample_frames=SAMPLE, sample_embeddings=EMBEDDED)
            finally:
                if engine.dialect.name == "sqlite":
                    raw.set_progress_handler(None, 0)
        return buffers_touched(engine, sent) if engine.dialect.name == "postgresql" else len(steps)

    first = one_pass()
    second = one_pass()  # as the next hourly pass: the closed hours are kept
    assert second * 3 < first, (first, second)  # read whole, each pass does the first's work again
