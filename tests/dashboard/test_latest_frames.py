"""The demo page lists the latest scored frames with their scores."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import cv2
import numpy as np
import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker
from streamlit.testing.v1 import AppTest

from bearwatch.dashboard_server import dashboard_script
from bearwatch.schema import Camera, Frame, FrameStatus, ModelVersion, Prediction, Role, utcnow
from bearwatch.users import add_user
from dashboard.queries import latest_scored_frames
from ingest.cameras import add_camera
from ingest.store import FrameStore
from shadow.sites import add_site
from tests.dashboard.conftest import login


def _scored(factory: sessionmaker[Session], store: FrameStore, scores: list[float]) -> None:
    jpeg = cv2.imencode(".jpg", np.full((48, 64, 3), 90, np.uint8))[1].tobytes()
    with factory.begin() as session:
        site = add_site(session, "north", actor="test")
        camera = add_camera(session, site, "creek", "x.avi", interval_s=5)
        model = ModelVersion(name="demo", path="/m.pkl", sha256="0" * 64, classes=["bear", "empty"],
                             positive_classes=["bear"], threshold=0.5)
        session.add(model)
        session.flush()
        for i, score in enumerate(scores):
            when = utcnow() - timedelta(minutes=len(scores) - i)
            stored = store.write(site.id, camera.id, when, jpeg)
            frame = Frame(camera_id=camera.id, captured_at=when, path=stored.path, sha256=stored.sha256,
                          size_bytes=stored.size_bytes, width=64, height=48, status=FrameStatus.SCORED)
            session.add(frame)
            session.flush()
            session.add(Prediction(frame_id=frame.id, model_version_id=model.id, positive_score=score,
                                   flagged=score >= 0.5, probabilities={"bear": score, "empty": 1 - score}))


def test_latest_scored_frames_newest_first(factory: sessionmaker[Session], tmp_path: Path) -> None:
    _scored(factory, FrameStore(tmp_path), [0.1, 0.95, 0.3])
    with factory() as session:
        rows = latest_scored_frames(session, limit=2)
    assert [r.positive_score for r in rows] == [0.3, 0.95]
    assert rows[1].flagged and rows[1].label == "bear" and rows[0].label == "empty"
    assert (rows[0].site, rows[0].camera) == ("north", "creek")


def _tiles(app: AppTest) -> list[str]:
    return [str(h.value) for h in app.get("html") if 'class="bw-tile' in str(h.value)]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_page_shows_each_scored_frame_with_its_score_and_flags_outlined_in_red(
    factory: sessionmaker[Session], database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BEARWATCH_DATABASE_URL", database_url)
    monkeypatch.setenv("BEARWATCH_DATA_DIR", str(tmp_path))
    _scored(factory, FrameStore(tmp_path / "frames"), [0.1, 0.95])
    with factory.begin() as session:
        add_user(session, "rita", Role.RANGER, "a long password")
    app = login(AppTest.from_file(str(dashboard_script()), default_timeout=30), "rita", "a long password")
    app.switch_page("views/latest_frames.py").run()
    assert not app.exception
    tiles = _tiles(app)
    assert len(tiles) == 2 and all("data:image/jpeg;base64," in t for t in tiles), "one frame tile per scored frame"
    (flagged,) = [t for t in tiles if "bear score 0.95" in t]
    assert 'class="bw-tile bw-flagged"' in flagged and "6px solid #d32f2f" in flagged and "FLAGGED" in flagged
    (quiet,) = [t for t in tiles if "bear score 0.10" in t]
    assert "bw-live" in quiet and "not flagged" in quiet and "#d32f2f" not in quiet


def test_a_live_wall_tile_links_to_its_cameras_recent_frames(
    factory: sessionmaker[Session], database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.dashboard.seed import seed_park

    seed_park(factory, tmp_path / "frames")
    monkeypatch.setenv("BEARWATCH_DATABASE_URL", database_url)
    monkeypatch.setenv("BEARWATCH_DATA_DIR", str(tmp_path))
    with factory.begin() as session:
        add_user(session, "rita", Role.RANGER, "a long password")
        creek = session.scalar(sa.select(Camera.id).where(Camera.name == "creek"))
    app = login(AppTest.from_file(str(dashboard_script()), default_timeout=30), "rita", "a long password")
    app.switch_page("views/live_wall.py").run()
    links = {link.label: link for link in app.get("page_link")}
    link = links["Recent frames of creek"]
    assert link.proto.page.endswith("latest") or "latest_frames" in link.proto.page
    assert link.proto.query_string == f"camera={creek}"
    app.query_params["camera"] = str(creek)
    app.switch_page("views/latest_frames.py").run()
    assert not app.exception
    tiles = _tiles(app)
    assert tiles and all('data-camera="creek"' in t for t in tiles), "only that camera's frames"
    assert any("bw-flagged" in t for t in tiles)


def test_latest_scored_frames_of_one_site(factory: sessionmaker[Session], tmp_path: Path) -> None:
    from tests.dashboard.seed import seed_park

    seed_park(factory, tmp_path / "frames")
    with factory() as session:
        north = latest_scored_frames(session, limit=3, site="north")
        south = latest_scored_frames(session, limit=24, site="south")
    assert [(r.camera, r.positive_score) for r in north] == [("creek", 0.93), ("creek", 0.05), ("gate", 0.2)]
    assert [r.camera for r in south] == ["shore", "shore"]
