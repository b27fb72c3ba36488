"""Latest frames: the newest scored frames of all cameras, with each model's score."""

from __future__ import annotations

import sqlalchemy as sa
import streamlit as st

from bearwatch.schema import Role
from dashboard.context import factory, page_actor, settings, site_names_cached
from dashboard.queries.frames import ScoredFrame, latest_scored_frames

REFRESH_S = 5

page_actor(Role.RANGER)


@st.cache_data(ttl=REFRESH_S - 1, show_spinner=False)
def _frames(database_url: str, site: str | None) -> list[ScoredFrame]:
    with factory()() as session:
        return latest_scored_frames(session, limit=24, site=site)



st.title("Latest frames")
url = settings().database_url
choice = st.selectbox("Site", ["all sites", *site_names_cached(url)], key="latest_site")
site = None if choice == "all sites" else choice


@st.fragment(run_every=REFRESH_S)
def grid() -> None:
    try:
        frames = _frames(url, site)
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
            path = settings().frames_dir / frame.path
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
