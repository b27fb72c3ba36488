"""The frame store writes complete files only, laid out by site/camera/day."""

from __future__ import annotations

import hashlib
from datetime import datetime, timezone
from pathlib import Path

from ingest.store import FrameStore


def test_write_is_complete_named_by_site_camera_day_and_hashed(tmp_path: Path) -> None:
    store = FrameStore(tmp_path)
    when = datetime(2026, 7, 4, 22, 15, 3, 120000, tzinfo=timezone.utc)
    stored = store.write(3, 17, when, b"\xff\xd8jpeg-bytes\xff\xd9")
    assert stored.path.startswith("site-3/camera-17/2026-07-04/221503_120000-")
    assert stored.path.endswith(".jpg")
    assert store.absolute(stored.path).read_bytes() == b"\xff\xd8jpeg-bytes\xff\xd9"
    assert stored.sha256 == hashlib.sha256(b"\xff\xd8jpeg-bytes\xff\xd9").hexdigest()
    assert stored.size_bytes == 14
    # nothing but the frame is left behind (no temp files)
    assert [p.name for p in store.absolute(stored.path).parent.iterdir()] == [Path(stored.path).name]


def test_two_frames_in_the_same_microsecond_do_not_collide(tmp_path: Path) -> None:
    store = FrameStore(tmp_path)
    when = datetime(2026, 7, 4, tzinfo=timezone.utc)
    a, b = store.write(1, 1, when, b"a"), store.write(1, 1, when, b"b")
    assert a.path != b.path
    assert store.absolute(a.path).read_bytes() == b"a"
