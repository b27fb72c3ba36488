"""Latest frames: the newest scored frames of all cameras, one site or one camera (the live
wall links each tile here), flagged ones outlined in red as on the live wall."""

from __future__ import annotations

import sqlalchemy as sa
import streamlit as st

from bearwatch.schema import Role
from dashboard.context import factory, page_actor, settings, site_names_cached, thumbnail_cached, zone_of
from dashboard.queries.frames import ScoredFrame, latest_scored_frames
from dashboard.tiles import frame_tile_html

REFRESH_S = 5
COLUMNS = 4

page_actor(Role.RANGER)


@st.cache_data(ttl=REFRESH_S - 1, show_spinner=False)
def _frames(database_url: str, site: str | None, camera_id: int | None) -> list[ScoredFrame]:
    with factory()() as session:
        return latest_scored_frames(session, limit=24, site=site, camera_id=camera_id)



def _camera_from_link() -> int | None:
    value = st.query_params.get("camera")
    return int(value) if value is not None and value.isdigit() else None


st.title("Latest frames")
url = settings().database_url
camera_id = _camera_from_link()
site: str | None = None
if camera_id is None:
    choice = st.selectbox("Site", ["all sites", *site_names_cached(url)], key="latest_site")
    site = None if choice == "all sites" else choice
else:
    st.page_link("views/latest_frames.py", label="All cameras", icon=":material/photo_library:")


@st.fragment(run_every=REFRESH_S)
def grid() -> None:
    try:
        frames = _frames(url, site, camera_id)
    except sa.exc.OperationalError as exc:
        st.error(f"database unavailable: {exc.orig}")
        return
    if not frames:
        st.info("No scored frames yet: cameras are sampled and frames scored every few seconds.")
        return
    whose = f"of {frames[0].site}/{frames[0].camera}" if camera_id is not None else ""
    st.caption(f"{len(frames)} newest scored frames {whose}, refreshed every {REFRESH_S}s")
    columns = st.columns(COLUMNS)
    for i, frame in enumerate(frames):
        with columns[i % COLUMNS]:
            st.html(frame_tile_html(frame, thumbnail_cached(frame.path), zone_of(frame.site)))  # see dashboard.tiles


grid()
