"""The bearwatch dashboard (Streamlit): the entry script.

Run with `bearwatch dashboard` (or `bearwatch demo`), which passes the settings in
through the environment. This script logs the user in and builds the navigation from
the page registry below, filtered by role; pages (dashboard/views/) are UI only and
get their data from the plain query functions in dashboard/queries/.

The page scripts are deliberately not in a folder named `pages/`: Streamlit would run
such a folder's scripts by URL on its own (its older multipage mode), around the login.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from bearwatch.auth import Actor
from bearwatch.schema import Role


@dataclass(frozen=True)
class PageSpec:
    path: str  # relative to this script
    title: str
    icon: str
    role: Role  # the lowest role that sees the page
    url_path: str


# The page registry. Rollout is open to rangers read-only (a site's stage decides what
# their verdicts do); promote/demote are refused to them by shadow.promotion itself.
PAGES: tuple[PageSpec, ...] = (
    PageSpec("views/live_wall.py", "Live wall", ":material/grid_view:", Role.RANGER, "live"),
    PageSpec("views/review.py", "Review", ":material/rate_review:", Role.RANGER, "review"),
    PageSpec("views/latest_frames.py", "Latest frames", ":material/photo_library:", Role.RANGER, "latest"),
    PageSpec("views/history.py", "History", ":material/history:", Role.RANGER, "history"),
    PageSpec("views/cameras.py", "Cameras", ":material/videocam:", Role.RANGER, "cameras"),
    PageSpec("views/rollout.py", "Rollout", ":material/rocket_launch:", Role.RANGER, "rollout"),
    PageSpec("views/alert_rates.py", "Alert rates", ":material/monitoring:", Role.OPS, "alert-rates"),
    PageSpec("views/drift.py", "Drift", ":material/query_stats:", Role.OPS, "drift"),
    PageSpec("views/models.py", "Models", ":material/model_training:", Role.OPS, "models"),
    PageSpec("views/users.py", "Users", ":material/group:", Role.ADMIN, "users"),
)


def visible_pages(actor: Actor, pages: Sequence[PageSpec] = PAGES) -> list[PageSpec]:
    return [page for page in pages if actor.may(page.role)]


THEME_KEY = "bw_dark"  # the sidebar toggle's widget key
THEME_REMEMBERED = "bw_dark_remembered"  # (user, their choice when this session began)


def _theme_toggle(user: str) -> bool:
    """The sidebar's dark-theme toggle (key t), the user's remembered choice when a session
    starts; each change is remembered (dashboard.theme)."""
    import streamlit as st

    from bearwatch.db import write_transaction
    from bearwatch.users import set_preference
    from dashboard.context import factory
    from dashboard.theme import THEME_PREFERENCE, remembered_dark

    def remember() -> None:
        with write_transaction(factory()) as session:
            set_preference(session, user, THEME_PREFERENCE, "dark" if st.session_state[THEME_KEY] else "light")

    remembered = st.session_state.get(THEME_REMEMBERED)
    if remembered is None or remembered[0] != user:  # a new session, or another user in this tab: read once
        with factory()() as session:
            remembered = (user, remembered_dark(session, user))
        st.session_state[THEME_REMEMBERED] = remembered
        st.session_state.pop(THEME_KEY, None)
    # The remembered choice is the toggle's default, not a value put into its state: a first
    # run cut short by the next click would leave the browser showing the toggle off.
    return bool(st.toggle("Dark theme (t)", value=remembered[1], key=THEME_KEY, on_change=remember))


def main() -> None:
    # Streamlit and the pages' modules load here, when the script runs: importing the page
    # registry above (the login tests read it) must not load Streamlit and the pages.
    import streamlit as st

    from dashboard.context import metrics_server, sso_section
    from dashboard.keys import bind_app_keys
    from dashboard.login import login_view, logout, resolve_actor, set_cookie_in_background
    from dashboard.metrics import PAGE_SECONDS
    from dashboard.theme import DARK_CSS, THEMED_PAGES

    st.set_page_config(page_title="bearwatch", page_icon="🐻", layout="wide")
    metrics_server()
    sso = sso_section()
    actor = resolve_actor(sso)
    if actor is None:
        # Only the login page exists for someone not logged in: every other URL lands here.
        st.navigation([st.Page(lambda: login_view(sso), title="Log in", url_path="login")], position="hidden").run()
        return
    specs = visible_pages(actor)
    pages = [
        st.Page(spec.path, title=spec.title, icon=spec.icon, url_path=spec.url_path, default=i == 0)
        for i, spec in enumerate(specs)
    ]
    themed = {id(p) for p, spec in zip(pages, specs, strict=True) if spec.url_path in THEMED_PAGES}
    with st.sidebar:
        st.caption(f"Logged in as **{actor.name}** ({actor.role.value})")
        st.button("Log out", key="logout", on_click=logout, args=(sso,))
        dark = _theme_toggle(actor.name)
        bind_app_keys({"t": THEME_KEY})
        set_cookie_in_background()
    page = st.navigation(pages)
    if dark and id(page) in themed:  # the ranger pages: ops and admin pages keep the server's theme
        st.html(DARK_CSS)
    with PAGE_SECONDS.labels(page.title).time():  # the 1.5 s page target, watched live
        page.run()


if __name__ == "__main__":
    main()
