"""Health transitions, their stored history, and capped exponential backoff with jitter."""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from bearwatch.schema import CameraHealth
from ingest.health import backoff_s, health_after
from ingest.sampler import CameraSampler, CameraSpec, Outcome, SamplerOptions
from ingest.store import FrameStore
from tests.ingest.helpers import camera, frames_of, health_events, jpeg, make_camera, scene, write_folder

T0 = datetime(2026, 7, 4, 22, 0, tzinfo=timezone.utc)


def test_health_policy() -> None:
    assert [health_after(n) for n in range(5)] == [
        CameraHealth.ONLINE, CameraHealth.DEGRADED, CameraHealth.DEGRADED, CameraHealth.OFFLINE, CameraHealth.OFFLINE
    ]
    assert health_after(0, enabled=False) is CameraHealth.DISABLED


def test_backoff_grows_exponentially_is_capped_and_jittered() -> None:
    rng = random.Random(7)
    delays = [backoff_s(n, base_s=1.0, cap_s=30.0, rng=rng) for n in range(1, 9)]
    for n, delay in enumerate(delays, start=1):
        step = min(30.0, 2 ** (n - 1))
        assert step / 2 <= delay <= step
    assert max(delays) <= 30.0 and delays[-1] >= 15.0
    spread = {round(backoff_s(4, base_s=1.0, cap_s=30.0, rng=rng), 3) for _ in range(20)}
    assert len(spread) > 10  # jitter: cameras behind one dead switch do not retry together
    assert backoff_s(0, base_s=1.0, cap_s=30.0, rng=rng) == 0.0


def test_corrupt_and_frozen_frames_are_rejected_counted_in_health_and_the_camera_recovers(
    factory: sessionmaker[Session], tmp_path: Path
) -> None:
    """An image folder replays: good, corrupt (truncated JPEG), black, the same picture
    three times (the third is frozen), then good again."""
    good, same = jpeg(scene(1)), jpeg(scene(2))
    black = jpeg(scene(3) * 0)
    truncated = jpeg(scene(4))[:300]
    pictures = [good, truncated, black, same, same, same, jpeg(scene(5))]
    write_folder(tmp_path / "replay", [(T0 + timedelta(seconds=5 * i), p) for i, p in enumerate(pictures)])
    camera_id = make_camera(factory, f"folder://{tmp_path / 'replay'}", interval_s=0.5)
    spec = CameraSpec(camera_id, camera(factory, camera_id).site_id, f"folder://{tmp_path / 'replay'}", 0.5)
    sampler = CameraSampler(factory, FrameStore(tmp_path / "frames"), spec, options=SamplerOptions(backoff_cap_s=0.01))
    outcomes = []
    for _ in pictures:
        sampler._retry_at = 0.0  # backoff is tested above; here every picture is sampled in turn
        outcomes.append(sampler.sample())
    outcomes.append(sampler.sample())
    assert outcomes == [
        Outcome.STORED, Outcome.FAILED, Outcome.BLACK, Outcome.STORED, Outcome.STORED, Outcome.FROZEN, Outcome.STORED,
        Outcome.NO_NEW,
    ]
    stored = frames_of(factory, camera_id)
    assert [f.captured_at for f in stored] == [T0, T0 + timedelta(seconds=15), T0 + timedelta(seconds=20), T0 + timedelta(seconds=30)]
    assert stored[0].change_score is None and stored[2].change_score == pytest.approx(0, abs=0.01)
    assert stored[3].change_score > 0.05
    assert health_events(factory, camera_id) == [
        ("unknown", "online"), ("online", "degraded"), ("degraded", "online"), ("online", "degraded"), ("degraded", "online"),
    ]
    row = camera(factory, camera_id)
    assert row.health is CameraHealth.ONLINE and row.consecutive_failures == 0 and row.last_error is None


def test_a_replaying_folder_resumes_after_the_last_stored_image(factory: sessionmaker[Session], tmp_path: Path) -> None:
    write_folder(tmp_path / "f", [(T0 + timedelta(minutes=i), jpeg(scene(10 + i))) for i in range(3)])
    source = str(tmp_path / "f")  # a plain directory path is an image folder
    camera_id = make_camera(factory, source)
    spec = CameraSpec(camera_id, camera(factory, camera_id).site_id, source, 5.0)
    store = FrameStore(tmp_path / "frames")
    assert CameraSampler(factory, store, spec).sample() is Outcome.STORED
    again = CameraSampler(factory, store, spec)  # a restarted worker
    assert [again.sample(), again.sample(), again.sample()] == [Outcome.STORED, Outcome.STORED, Outcome.NO_NEW]
    assert [f.captured_at for f in frames_of(factory, camera_id)] == [T0 + timedelta(minutes=i) for i in range(3)]
