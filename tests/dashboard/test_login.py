"""Nobody sees anything without logging in; roles decide which pages exist."""

from __future__ import annotations

import pytest

from streamlit.testing.v1 import AppTest

from bearwatch.auth import Actor
from bearwatch.dashboard_server import dashboard_script
from bearwatch.schema import Role
from dashboard.app import PAGES, visible_pages
from dashboard.context import ACTOR_KEY
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
def test_five_wrong_passwords_lock_the_name_for_a_while(park: Seeded) -> None:
    app = open_app()
    for _ in range(5):
        submit_login(app, "ranger", "wrong password!")
        assert [e.value for e in app.error] == ["Wrong user name or password."]
    submit_login(app, "ranger", PASSWORD)
    assert [e.value for e in app.error] == ["Too many failed logins for this name; try again in 5 min."]
    assert "bw-tile" not in page_text(app)
    submit_login(app, "admin", PASSWORD)  # other names are not affected
    assert not app.error
