"""Nobody sees anything without logging in; roles decide which pages exist."""

from __future__ import annotations

import re
import time

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from bearwatch.auth import Actor
from bearwatch.dashboard_server import dashboard_script
from bearwatch.logins import record_failure
from bearwatch.schema import Role, utcnow
from bearwatch.settings import load_settings
from bearwatch.users import disable_user, set_password
from dashboard.app import PAGES, visible_pages
from dashboard.context import ACTOR_KEY
from dashboard.login import ACTIVE_KEY
from tests.dashboard.conftest import login, open_app, page_text, submit_login
from tests.dashboard.seed import PASSWORD, Seeded


def test_not_logged_in_sees_only_the_login_form(park: Seeded) -> None:
    app = open_app().run()
    assert not app.exception
    assert [b.label for b in app.button] == ["Log in"]
    assert "bw-tile" not in page_text(app) and not app.dataframe
    with pytest.raises(ValueError, match="Known pages: \\['Log in'\\]"):
        app.switch_page("views/users.py")  # no other page exists before logging in


@pytest.mark.parametrize(("name", "password"), [("ranger", "wrong password!"), ("nobody", PASSWORD), ("", "")])
def test_wrong_password_or_unknown_user_is_refused(park: Seeded, name: str, password: str) -> None:
    app = submit_login(open_app(), name, password)
    assert not app.exception
    assert [e.value for e in app.error] == ["Wrong user name or password."]
    assert "bw-tile" not in page_text(app)


def test_ranger_logs_in_to_the_live_wall_and_out_again(park: Seeded) -> None:
    app = login(open_app(), "ranger", PASSWORD)
    assert not app.exception
    assert "Logged in as **ranger** (ranger)" in page_text(app)
    assert "Live wall" in [t.value for t in app.title]
    app.button(key="logout").click().run()
    assert "bw-tile" not in page_text(app) and "Log in" in [b.label for b in app.button]


def test_a_ranger_has_no_users_page(park: Seeded) -> None:
    app = login(open_app(), "ranger", PASSWORD)
    with pytest.raises(ValueError, match="Could not find a navigation page"):
        app.switch_page("views/users.py")
    app.switch_page("views/cameras.py").run()
    assert not app.exception and app.dataframe, "the cameras page is there for rangers"


@pytest.mark.parametrize("actor", [None, Actor("ranger", Role.RANGER)])
def test_the_users_page_itself_refuses_anyone_but_an_admin(park: Seeded, actor: Actor | None) -> None:
    # Even when run directly (not through the navigation), the page checks the role.
    app = AppTest.from_file(str(dashboard_script().parent / "views" / "users.py"), default_timeout=30)
    if actor is not None:
        app.session_state[ACTOR_KEY] = actor
    app.run()
    assert not app.exception
    assert not app.dataframe and "Add a user" not in page_text(app)
    assert app.warning or app.error


def test_pages_follow_the_role() -> None:
    titles = {role: [p.title for p in visible_pages(Actor("x", role))] for role in Role}
    assert "Users" not in titles[Role.RANGER] and "Models" not in titles[Role.RANGER]
    assert "Models" in titles[Role.OPS] and "Users" not in titles[Role.OPS]
    assert titles[Role.ADMIN] == [p.title for p in PAGES]
    assert titles[Role.RANGER][0] == "Live wall"


def test_a_changed_role_takes_effect_on_the_next_page_load(park: Seeded, factory) -> None:  # type: ignore[no-untyped-def]
    from bearwatch.users import set_role

    app = login(open_app(), "admin", PASSWORD)
    assert "Logged in as **admin** (admin)" in page_text(app)
    with factory.begin() as session:
        set_role(session, "admin", Role.RANGER)
    app.run()
    assert "Logged in as **admin** (ranger)" in page_text(app)
    with pytest.raises(ValueError, match="Could not find a navigation page"):
        app.switch_page("views/users.py")


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_repeated_wrong_passwords_slow_the_name_even_after_every_cache_is_cleared(park: Seeded, factory) -> None:  # type: ignore[no-untyped-def]
    app = open_app()
    for _ in range(3):
        submit_login(app, "ranger", "wrong password!")
        assert [e.value for e in app.error] == ["Wrong user name or password."]
    with factory.begin() as session:  # more of the same at once, so the delay (2**(12-6) s) outlasts a slow test
        for _ in range(9):
            record_failure(session, "ranger", "unknown", utcnow())
    # Streamlit clears these on a `clear_cache` message from any websocket client, logged
    # in or not; the throttle used to live there.
    st.cache_data.clear()
    st.cache_resource.clear()
    submit_login(app, "ranger", PASSWORD)
    assert len(app.error) == 1 and re.fullmatch(r"Too many failed logins; try again in \d+ (s|min)\.", app.error[0].value)
    assert "bw-tile" not in page_text(app)
    submit_login(app, "admin", PASSWORD)  # other names are not affected
    assert not app.error


def _ended_session(app: AppTest) -> str:
    app.run()
    assert "Log in" in [b.label for b in app.button], "back at the login form"
    assert "bw-tile" not in page_text(app)
    return " ".join(i.value for i in app.info)


def test_a_password_change_ends_an_open_session(park: Seeded, factory) -> None:  # type: ignore[no-untyped-def]
    app = login(open_app(), "ranger", PASSWORD)
    assert "Logged in as **ranger**" in page_text(app)
    with factory.begin() as session:
        set_password(session, "ranger", "a brand new password")
    assert "password was changed" in _ended_session(app)
    login(app, "ranger", "a brand new password")
    assert "Logged in as **ranger**" in page_text(app), "the new password opens a new session"


def test_disabling_a_user_ends_their_session(park: Seeded, factory) -> None:  # type: ignore[no-untyped-def]
    app = login(open_app(), "ranger", PASSWORD)
    with factory.begin() as session:
        disable_user(session, "ranger", utcnow())
    assert "disabled" in _ended_session(app)
    submit_login(app, "ranger", PASSWORD)
    assert [e.value for e in app.error] == ["Wrong user name or password."]


def test_a_session_idle_past_the_timeout_ends(park: Seeded) -> None:
    app = login(open_app(), "ranger", PASSWORD)
    app.session_state[ACTIVE_KEY] = time.monotonic() - load_settings().dashboard_idle_timeout_s - 1
    assert "without activity" in _ended_session(app)
