"""The page after the login opens fast (issue 16 item 11: within 1.5 s on the demo, from the
login click): the Live wall sends stored frames as they are instead of decoding and encoding
each again, and the server's preloaded modules are out of the full garbage collection that
Streamlit runs after every script run. (That the Live wall opens in the tab the login form
was in, without loading the app again, is in test_session_cookie.py.)"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from bearwatch.schema import Camera, Frame, FrameStatus, utcnow
from dashboard.tiles import THUMB_WIDTH
from ingest.store import FrameStore
from tests.dashboard.conftest import login, open_app, page_text
from tests.dashboard.seed import PASSWORD, Seeded


def _tile_images(app: Any) -> dict[str, bytes]:
    """camera name -> the JPEG its Live wall tile shows."""
    images = {}
    for chunk in page_text(app).split('<div class="bw-tile')[1:]:
        camera = chunk.split('data-camera="', 1)[1].split('"', 1)[0]
        if "data:image/jpeg;base64," in chunk:
            images[camera] = base64.b64decode(chunk.split("data:image/jpeg;base64,", 1)[1].split('"', 1)[0])
    return images


def _counting(monkeypatch: pytest.MonkeyPatch, name: str, calls: list[int]) -> None:
    """Count cv2.<name>'s calls (the decode flag of each), the real function still running."""
    real: Callable[..., Any] = getattr(cv2, name)

    def counted(source: Any, flags: int = cv2.IMREAD_COLOR, *rest: Any) -> Any:
        calls.append(flags)
        return real(source, flags, *rest)

    monkeypatch.setattr(cv2, name, counted)


def test_the_live_wall_shows_stored_frames_as_they_are_and_decodes_only_a_wide_one(
    park: Seeded, factory: sessionmaker[Session], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A wide frame (1280x960) for ridge, which had none: it needs a thumbnail made.
    wide = cv2.imencode(".jpg", cv2.resize(np.arange(256, dtype=np.uint8).reshape(16, 16), (1280, 960)))[1].tobytes()
    with factory.begin() as session:
        ridge = session.scalars(sa.select(Camera).where(Camera.name == "ridge")).one()
        stored = FrameStore(tmp_path / "frames").write(ridge.site_id, ridge.id, utcnow(), wide)
        session.add(Frame(camera_id=ridge.id, captured_at=utcnow(), path=stored.path, sha256=stored.sha256,
                          size_bytes=stored.size_bytes, width=1280, height=960, status=FrameStatus.PENDING))
    decodes: list[int] = []
    for name in ("imread", "imdecode"):
        _counting(monkeypatch, name, decodes)

    app = login(open_app(), "ranger", PASSWORD)
    assert not app.exception
    made = list(decodes)
    images = _tile_images(app)
    assert sorted(images) == ["creek", "gate", "ridge"]
    with factory() as session:
        newest = dict(session.execute(
            sa.select(Camera.name, Frame.path).join(Frame, Frame.camera_id == Camera.id)
            .where(Camera.name.in_(["creek", "gate"])).order_by(Frame.captured_at)).all())
    for camera, path in newest.items():  # 160x120 frames: no wider than a tile
        assert images[camera] == (tmp_path / "frames" / path).read_bytes(), f"{camera}: the stored JPEG itself"
    shown = cv2.imdecode(np.frombuffer(images["ridge"], np.uint8), cv2.IMREAD_COLOR)
    assert shown is not None and shown.shape[1] == THUMB_WIDTH, "the wide frame as a tile-sized thumbnail"
    assert made == [cv2.IMREAD_REDUCED_COLOR_2], "one decode, of the wide frame only, at half scale"


def test_the_server_preload_takes_loaded_modules_out_of_the_full_collections() -> None:
    # In a process of its own: freezing is for the whole process.
    script = ("import gc, json; from dashboard.serve import preload; preload(); "
              "print(json.dumps([gc.get_freeze_count(), len(gc.get_objects())]))")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                            cwd=Path(__file__).resolve().parents[2], check=True)
    frozen, tracked = json.loads(result.stdout.strip().splitlines()[-1])
    # Streamlit's gc.collect(2) after each script run walks only the tracked objects.
    assert frozen > 100_000 and tracked < frozen / 20, (frozen, tracked)
