"""Local time (issue 16 item 7): the park file names the park's time zone (and a site's own);
pages and CLI lines show the site's clock with the zone named, UTC stays in the database
and on hover. Both databases where a database is involved."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner

from bearwatch.errors import ConfigError
from bearwatch.localtime import local_text, park_zone, utc_hours_text, utc_text, when_html, zone
from bearwatch.park_apply import apply_config
from bearwatch.park_file import check_config_text
from bearwatch.schema import Frame, Role, Site, utcnow
from tests.shadow.helpers import add_frame, add_user, make_park

DENVER = "America/Denver"


def test_local_text_names_the_zone_and_follows_daylight_saving() -> None:
    winter = datetime(2026, 1, 15, 8, 30, 5, tzinfo=timezone.utc)
    summer = datetime(2026, 7, 15, 8, 30, 5, tzinfo=timezone.utc)
    assert local_text(winter, DENVER) == "2026-01-15 01:30 MST"
    assert local_text(summer, DENVER, seconds=True) == "2026-07-15 02:30:05 MDT"
    assert local_text(winter.replace(tzinfo=None), None, date=False) == "08:30 UTC", "naive is UTC, no zone is UTC"
    assert utc_text(summer) == "2026-07-15 08:30:05Z"
    assert 'title="2026-01-15 08:30:05Z"' in when_html(winter, DENVER) and "01:30 MST" in when_html(winter, DENVER)
    assert local_text(None, DENVER) == ""
    with pytest.raises(ConfigError, match="unknown time zone 'Mars/Base'"):
        zone("Mars/Base")
    assert park_zone([DENVER, DENVER]) == DENVER and park_zone([DENVER, "Europe/Oslo"]) == "UTC" and park_zone([]) == "UTC"


def test_trial_hours_read_in_the_sites_clock_with_utc_beside() -> None:
    """A limited trial's hours are stored as UTC hours; the rollout and alert-rate pages say them
    as the site's clock reads them that day (they moved an hour with daylight saving)."""
    winter = datetime(2026, 1, 15, 12, tzinfo=timezone.utc)
    summer = datetime(2026, 7, 15, 12, tzinfo=timezone.utc)
    assert utc_hours_text([3, 2], DENVER, winter) == "19:00, 20:00 MST (2, 3 UTC)"
    assert utc_hours_text([2, 3], DENVER, summer) == "20:00, 21:00 MDT (2, 3 UTC)"
    assert utc_hours_text([2], "Asia/Kolkata", summer) == "07:30 IST (2 UTC)"
    assert utc_hours_text([2, 3], None, summer) == "2, 3 UTC"


def test_the_park_file_sets_each_sites_zone_and_refuses_an_unknown_one(factory: sessionmaker[Session]) -> None:
    text = f"timezone: {DENVER}\nsites:\n- name: north\n- name: ferry\n  timezone: America/Vancouver\n"
    config, problems = check_config_text(text)
    assert config is not None and not problems
    with factory.begin() as session:
        apply_config(session, config, actor="test", now=utcnow())
    with factory() as session:
        assert dict(session.execute(sa.select(Site.name, Site.timezone)).all()) == {"north": DENVER, "ferry": "America/Vancouver"}

    moved, _ = check_config_text(text.replace(f"timezone: {DENVER}", "timezone: America/Phoenix"))
    assert moved is not None
    with factory.begin() as session:
        report = apply_config(session, moved, actor="test", now=utcnow())
    assert report.updated == ["site north time zone America/Phoenix"], "only the site without its own zone moves"

    _, problems = check_config_text("timezone: Mountain\n")
    assert len(problems) == 1 and problems[0].where == "timezone" and "unknown time zone 'Mountain'" in problems[0].message


def test_cli_lines_show_the_sites_local_time(factory: sessionmaker[Session], data_env: dict[str, str]) -> None:
    from bearwatch import cli

    cli_db = factory

    park = make_park(cli_db)
    add_user(cli_db, "ana", Role.RANGER)
    with cli_db.begin() as session:
        session.execute(sa.update(Site).values(timezone=DENVER))
    flagged = add_frame(cli_db, park.cameras[0], utcnow() - timedelta(minutes=5), model_id=park.model_id, score=0.9)
    with cli_db() as session:
        captured = session.get(Frame, flagged).captured_at  # type: ignore[union-attr]

    queue = CliRunner().invoke(cli.app, ["review", "--user", "ana"])
    assert queue.exit_code == 0, queue.output
    line = next(line for line in queue.output.splitlines() if line.startswith(f"frame {flagged} "))
    assert local_text(captured, DENVER, seconds=True) in line and ("MST" in line or "MDT" in line)
    assert f"{captured:%H:%M:%S}Z" not in line, "no UTC clock where the ranger reads the time"

    users = CliRunner().invoke(cli.app, ["user", "list"])
    assert users.exit_code == 0 and ("MST" in users.output or "MDT" in users.output), users.output


def test_the_review_page_shows_local_time_with_utc_on_hover(park_tz: Path) -> None:
    from tests.dashboard.conftest import login, open_app, page_text
    from tests.dashboard.seed import PASSWORD

    app = login(open_app(), "ranger", PASSWORD)
    app.switch_page("views/review.py").run()
    assert not app.exception
    header = next(str(m.value) for m in app.markdown if " / " in str(m.value))
    assert ("MST" in header or "MDT" in header) and 'title="' in header and 'Z">' in header, header
    assert "Z\n" not in page_text(app).split("Next in the queue")[0]


@pytest.fixture
def park_tz(factory: sessionmaker[Session], database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The dashboard's seeded park with every site on Denver time."""
    import streamlit as st

    from shadow.alerts import process_new_flags
    from tests.dashboard.seed import seed_park

    st.cache_data.clear()
    st.cache_resource.clear()
    monkeypatch.setenv("BEARWATCH_DATABASE_URL", database_url)
    monkeypatch.setenv("BEARWATCH_DATA_DIR", str(tmp_path))
    seed_park(factory, tmp_path / "frames")
    with factory.begin() as session:
        session.execute(sa.update(Site).values(timezone=DENVER))
    process_new_flags(factory, utcnow())
    yield tmp_path
    st.cache_data.clear()
    st.cache_resource.clear()
