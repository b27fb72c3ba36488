"""Live wall: the newest frame of every camera of one site, flagged frames outlined in
red, stale and dark cameras marked. Refreshes itself."""

from __future__ import annotations

import sqlalchemy as sa
import streamlit as st

from bearwatch.schema import Role, utcnow
from dashboard.context import factory, page_actor, settings, site_names_cached, thumbnail_cached, zone_of
from dashboard.queries.cameras import CameraState
from dashboard.queries.live_wall import LiveWall, live_wall
from dashboard.tiles import tile_html

REFRESH_S = 5
COLUMNS = 4

page_actor(Role.RANGER)


@st.cache_data(ttl=REFRESH_S - 2, show_spinner=False)
def _wall(database_url: str, site: str) -> LiveWall:
    with factory()() as session:
        return live_wall(session, site, now=utcnow())




url = settings().database_url
sites = site_names_cached(url)
st.title("Live wall")
if not sites:
    st.info("No sites yet: an admin adds them with `bearwatch config apply` or `bearwatch site add`.")
    st.stop()
site = st.selectbox("Site", sites, key="wall_site")


@st.fragment(run_every=REFRESH_S)
def wall() -> None:
    try:
        data = _wall(url, site)
    except sa.exc.OperationalError as exc:
        st.error(f"database unavailable: {exc.orig}")
        return
    flagged = sum(t.flagged for t in data.tiles)
    stale = sum(t.state is CameraState.STALE for t in data.tiles)
    dark = sum(t.state is CameraState.DARK for t in data.tiles)
    model = data.rollout_model or "any model (no rollout model set)"
    st.caption(
        f"Stage **{data.stage.value}** · scores of {model} · {len(data.tiles)} cameras · "
        f"{flagged} flagged · {stale} stale · {dark} dark · refreshed every {REFRESH_S}s"
    )
    if not data.tiles:
        st.info("This site has no cameras yet.")
        return
    columns = st.columns(COLUMNS)
    for i, tile in enumerate(data.tiles):
        with columns[i % COLUMNS]:
            image = thumbnail_cached(tile.path) if tile.path else None
            st.html(tile_html(tile, image, zone_of(site)))  # not st.markdown: see dashboard.tiles
            st.page_link("views/latest_frames.py", label=f"Recent frames of {tile.camera}",
                         query_params={"camera": str(tile.camera_id)})


wall()
