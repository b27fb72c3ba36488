"""Each page, logged in, on a seeded park (SQLite and PostgreSQL)."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from bearwatch.schema import Camera, ModelRole, ModelVersion, Role, Site, Stage
from bearwatch.users import authenticate
from tests.dashboard.conftest import login, open_app, page_text
from tests.dashboard.seed import PASSWORD, SECRET, Seeded


def _tiles(text: str) -> dict[str, str]:
    """camera name -> the tile's HTML."""
    return {
        chunk.split('data-camera="', 1)[1].split('"', 1)[0]: chunk
        for chunk in text.split('<div class="bw-tile')[1:]
    }


def test_live_wall_outlines_flagged_frames_and_marks_stale_and_dark_cameras(park: Seeded) -> None:
    app = login(open_app(), "ranger", PASSWORD)
    assert not app.exception
    tiles = _tiles(page_text(app))
    assert sorted(tiles) == ["creek", "gate", "ridge"], "one tile per camera of the first site (north)"
    assert tiles["creek"].startswith(" bw-flagged") and "⚠ FLAGGED" in tiles["creek"] and "bear score 0.93" in tiles["creek"]
    assert "solid #d32f2f" in tiles["creek"], "flagged frames are outlined in red"
    assert "data:image/jpeg;base64," in tiles["creek"]
    assert tiles["gate"].startswith(" bw-stale") and "STALE" in tiles["gate"] and "10 min ago" in tiles["gate"]
    assert "FLAGGED" not in tiles["gate"]
    assert tiles["ridge"].startswith(" bw-dark") and "DARK" in tiles["ridge"] and "no frame yet" in tiles["ridge"]
    assert "1 flagged · 1 stale · 1 dark" in page_text(app)
    assert "scores of demo-bear" in page_text(app)

    app.selectbox(key="wall_site").select("south").run()
    tiles = _tiles(page_text(app))
    assert list(tiles) == ["shore"] and tiles["shore"].startswith(" bw-live") and "FLAGGED" not in tiles["shore"]


def test_cameras_page_shows_health_with_sources_and_errors_redacted(park: Seeded) -> None:
    app = login(open_app(), "ranger", PASSWORD)
    app.switch_page("views/cameras.py").run()
    assert not app.exception
    table = app.dataframe[0].value
    gate = table[table["camera"] == "gate"].iloc[0]
    assert gate["source"] == "rtsp://ranger:***@10.1.1.7:554/live?token=***"
    assert gate["last error"].startswith("cannot open rtsp://ranger:***@10.1.1.7") and gate["failures in a row"] == 4
    assert gate["state"] == "stale"
    assert table[table["camera"] == "ridge"].iloc[0]["state"] == "dark"
    assert list(table["camera"])[:2] == ["ridge", "gate"], "worst first"
    assert SECRET not in page_text(app)
    assert not [b for b in app.button if b.key == "camera_toggle"], "rangers cannot switch cameras"


def test_admin_disables_and_enables_a_camera(park: Seeded, factory: sessionmaker[Session]) -> None:
    app = login(open_app(), "admin", PASSWORD)
    app.switch_page("views/cameras.py").run()
    app.selectbox(key="camera_toggle_choice").select("north/creek (enabled)").run()
    assert app.button(key="camera_toggle").label == "Disable north/creek"
    app.button(key="camera_toggle").click().run()
    assert not app.exception
    with factory() as session:
        assert session.get(Camera, park.camera_ids["creek"]).enabled is False  # type: ignore[union-attr]
    table = app.dataframe[0].value
    assert table[table["camera"] == "creek"].iloc[0]["state"] == "disabled"
    app.selectbox(key="camera_toggle_choice").select("north/creek (disabled)").run()
    app.button(key="camera_toggle").click().run()
    with factory() as session:
        assert session.get(Camera, park.camera_ids["creek"]).enabled is True  # type: ignore[union-attr]


def test_models_page_lists_versions_and_admin_changes_the_threshold(
    park: Seeded, factory: sessionmaker[Session]
) -> None:
    with factory.begin() as session:
        session.scalar(sa.select(Site).where(Site.name == "north")).stage = Stage.LIMITED  # type: ignore[union-attr]
    app = login(open_app(), "admin", PASSWORD)
    app.switch_page("views/models.py").run()
    assert not app.exception
    row = app.dataframe[0].value.iloc[0]
    assert (row["name"], row["role"], row["threshold"]) == ("demo-bear", "rollout", 0.5)
    assert row["classes"] == "bear, deer, empty" and row["positive"] == "bear"
    assert row["sha256"] == "ab" * 6 and row["rollout model of"] == "north"

    app.number_input(key=f"model_threshold_{park.model_id}").set_value(0.7)
    next(b for b in app.button if b.label == "Save").click().run()
    assert not app.exception and not app.error
    with factory() as session:
        assert session.get(ModelVersion, park.model_id).threshold == 0.7  # type: ignore[union-attr]
        north = session.scalar(sa.select(Site).where(Site.name == "north"))
        assert north is not None and north.stage is Stage.MANUAL, "a new threshold sends the site back to manual"

    app.selectbox(key=f"model_role_{park.model_id}").select("retired")
    next(b for b in app.button if b.label == "Save").click().run()
    assert "give those sites another rollout model" in app.error[0].value
    with factory() as session:
        assert session.get(ModelVersion, park.model_id).role is ModelRole.ROLLOUT  # type: ignore[union-attr]


def test_ops_sees_models_but_cannot_change_them(park: Seeded) -> None:
    app = login(open_app(), "ops", PASSWORD)
    app.switch_page("views/models.py").run()
    assert not app.exception and len(app.dataframe) == 1
    assert "Save" not in [b.label for b in app.button]


def test_admin_adds_a_user_who_can_then_log_in(park: Seeded, factory: sessionmaker[Session]) -> None:
    app = login(open_app(), "admin", PASSWORD)
    app.switch_page("views/users.py").run()
    assert not app.exception
    assert sorted(app.dataframe[0].value["name"]) == ["admin", "ops", "ranger"]
    app.text_input(key="new_user_name").input("rosa")
    app.selectbox(key="new_user_role").select("ops")
    app.text_input(key="new_user_password").input("night shift 42")
    next(b for b in app.button if b.label == "Add user").click().run()
    assert not app.exception and not app.error
    assert "user rosa added (ops)" in [s.value for s in app.success]
    assert "rosa" in list(app.dataframe[0].value["name"])
    with factory.begin() as session:
        actor = authenticate(session, "rosa", "night shift 42")
    assert actor is not None and actor.role is Role.OPS

    app.text_input(key="new_user_name").input("x y")
    app.text_input(key="new_user_password").input("short")
    next(b for b in app.button if b.label == "Add user").click().run()
    assert "invalid user name" in app.error[0].value

    app.selectbox(key="role_user").select("rosa")
    app.selectbox(key="role_new").select("ranger")
    next(b for b in app.button if b.label == "Change role").click().run()
    assert "rosa is now ranger" in [s.value for s in app.success]


def test_an_empty_park_says_what_to_do_on_every_page(
    factory: sessionmaker[Session], database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    from bearwatch.users import add_user

    monkeypatch.setenv("BEARWATCH_DATABASE_URL", database_url)
    monkeypatch.setenv("BEARWATCH_DATA_DIR", str(tmp_path))
    with factory.begin() as session:
        add_user(session, "ada", Role.ADMIN, PASSWORD)
    app = login(open_app(), "ada", PASSWORD)
    assert not app.exception and "No sites yet" in app.info[0].value
    for view, hint in (("views/cameras.py", "No cameras yet"), ("views/models.py", "No models yet"),
                       ("views/latest_frames.py", "No scored frames yet")):
        app.switch_page(view).run()
        assert not app.exception and hint in app.info[0].value
