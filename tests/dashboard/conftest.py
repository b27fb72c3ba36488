"""Dashboard fixtures: a seeded park on each database, and the app under AppTest."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import streamlit as st
from sqlalchemy.orm import Session, sessionmaker
from streamlit.testing.v1 import AppTest

from bearwatch.dashboard_server import dashboard_script
from tests.dashboard.seed import Seeded, seed_park


@pytest.fixture(autouse=True)
def _fresh_streamlit_caches() -> Iterator[None]:
    # Settings, engine and query caches live per process; each test has its own database.
    st.cache_data.clear()
    st.cache_resource.clear()
    yield
    st.cache_data.clear()
    st.cache_resource.clear()


@pytest.fixture
def park(factory: sessionmaker[Session], database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Seeded:
    monkeypatch.setenv("BEARWATCH_DATABASE_URL", database_url)
    monkeypatch.setenv("BEARWATCH_DATA_DIR", str(tmp_path))
    return seed_park(factory, tmp_path / "frames")


def open_app() -> AppTest:
    return AppTest.from_file(str(dashboard_script()), default_timeout=30)


def submit_login(app: AppTest, name: str, password: str) -> AppTest:
    app.run()
    app.text_input(key="login_name").input(name)
    app.text_input(key="login_password").input(password)
    next(b for b in app.button if b.label == "Log in").click()
    return app.run()


def login(app: AppTest, name: str, password: str) -> AppTest:
    submit_login(app, name, password)
    # Logging in ends with st.rerun(); AppTest keeps the login page as the current page
    # until the next run, so widgets of the new page answer clicks only after it.
    return app.run()


def page_text(app: AppTest) -> str:
    """Everything the page shows as text (markdown, HTML such as the frame tiles, captions, alerts, tables)."""
    parts = [str(e.value) for kind in ("markdown", "html", "caption", "title", "subheader", "error", "warning", "info", "success")
             for e in app.get(kind)]
    parts += [df.value.to_csv() for df in app.dataframe]
    return "\n".join(parts)
