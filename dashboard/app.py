"""The bearwatch dashboard (Streamlit). UI only: data comes from dashboard.queries.

Run with `bearwatch dashboard` (or `bearwatch demo`), which passes the settings in
through the environment.
"""

from __future__ import annotations

import sqlalchemy as sa
import streamlit as st
from sqlalchemy.orm import Session, sessionmaker

from bearwatch.db import make_engine, session_factory
from bearwatch.settings import Settings, load_settings
from dashboard.queries import latest_scored_frames, site_names

REFRESH_S = 5


@st.cache_resource
def _settings() -> Settings:
    return load_settings()


@st.cache_resource
def _factory(url: str) -> sessionmaker[Session]:
    # One engine per dashboard process, made on first use.
    return session_factory(make_engine(url))


def latest_frames_page() -> None:
    settings = _settings()
    factory = _factory(settings.database_url)
    st.title("bearwatch: latest frames")
    with factory() as session:
        sites = site_names(session)
    choice = st.selectbox("Site", ["all sites", *sites])
    site = None if choice == "all sites" else choice

    @st.fragment(run_every=REFRESH_S)
    def grid() -> None:
        with factory() as session:
            try:
                frames = latest_scored_frames(session, limit=24, site=site)
            except sa.exc.OperationalError as exc:
                st.error(f"database unavailable: {exc.orig}")
                return
        if not frames:
            st.info("No scored frames yet: cameras are sampled and frames scored every few seconds.")
            return
        st.caption(f"{len(frames)} newest scored frames, refreshed every {REFRESH_S}s")
        columns = st.columns(4)
        for i, frame in enumerate(frames):
            with columns[i % 4]:
                path = settings.frames_dir / frame.path
                flag = "FLAGGED" if frame.flagged else "not flagged"
                caption = (
                    f"{frame.site}/{frame.camera} · {frame.captured_at:%H:%M:%S}Z · "
                    f"{frame.label} · bear score {frame.positive_score:.2f} · {flag}"
                )
                if path.is_file():
                    st.image(str(path), caption=caption)
                else:
                    st.warning(f"frame file missing: {caption}")

    grid()


if __name__ == "__main__":
    st.set_page_config(page_title="bearwatch", page_icon="🐻", layout="wide")
    latest_frames_page()
