"""Cameras: health, age of the last frame, failures and the last error (sources and
errors redacted). Admins can enable or disable a camera."""

from __future__ import annotations

import streamlit as st

from bearwatch.db import write_transaction
from bearwatch.errors import BearwatchError
from bearwatch.schema import Role, utcnow
from dashboard.context import factory, page_actor, settings
from dashboard.queries.cameras import CameraRow, camera_health
from ingest.cameras import set_camera_enabled

actor = page_actor(Role.RANGER)


@st.cache_data(ttl=5, show_spinner=False)
def _cameras(database_url: str) -> tuple[CameraRow, ...]:
    with factory()() as session:
        return camera_health(session, now=utcnow())


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "never"
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


st.title("Cameras")
url = settings().database_url
rows = _cameras(url)
if not rows:
    st.info("No cameras yet: an admin adds them with `bearwatch camera add` or `bearwatch config apply`.")
    st.stop()
st.caption("Worst first: dark, stale, disabled, live.")
st.dataframe(
    [
        {
            "site": r.site, "camera": r.camera, "state": r.state.value, "health": r.health.value,
            "last frame": _age(r.last_frame_age_s), "every (s)": r.interval_s,
            "failures in a row": r.consecutive_failures, "last error": r.last_error or "",
            "source": r.source,
        }
        for r in rows
    ],
    hide_index=True,
    width="stretch",
)

if actor.may(Role.ADMIN):
    st.subheader("Enable or disable a camera")
    labels = {f"{r.site}/{r.camera} ({'enabled' if r.enabled else 'disabled'})": r for r in rows}
    choice = st.selectbox("Camera", list(labels), key="camera_toggle_choice")
    chosen = labels[choice]
    action = "Disable" if chosen.enabled else "Enable"
    if st.button(f"{action} {chosen.site}/{chosen.camera}", key="camera_toggle"):
        try:
            with write_transaction(factory()) as session:
                set_camera_enabled(session, actor, chosen.camera_id, not chosen.enabled)
        except BearwatchError as exc:
            st.error(str(exc))
        else:
            _cameras.clear()
            st.success(f"{chosen.site}/{chosen.camera} {'disabled' if chosen.enabled else 'enabled'}")
            st.rerun()
