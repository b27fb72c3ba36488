"""The Users page (admins): disable, enable, remove, reset a password, with the same role
checks as the CLI; what it does reaches the affected user's open session."""

from __future__ import annotations

from sqlalchemy.orm import Session, sessionmaker
from streamlit.testing.v1 import AppTest

from bearwatch.users import authenticate
from tests.dashboard.conftest import login, open_app, page_text
from tests.dashboard.seed import PASSWORD, Seeded


def _users_page() -> AppTest:
    app = login(open_app(), "admin", PASSWORD)
    app.switch_page("views/users.py").run()
    assert not app.exception
    return app


def _act(app: AppTest, user: str, button: str, password: str = "") -> AppTest:
    app.selectbox(key="manage_user").set_value(user)
    app.text_input(key="manage_password").input(password)
    next(b for b in app.button if b.label == button).click()
    return app.run()


def _state(app: AppTest, user: str) -> str:
    table = app.dataframe[0].value
    return str(table[table["name"] == user].iloc[0]["state"])


def test_an_admin_disables_and_enables_a_ranger_whose_session_ends(park: Seeded) -> None:
    ranger = login(open_app(), "ranger", PASSWORD)
    assert "Logged in as **ranger**" in page_text(ranger)
    app = _act(_users_page(), "ranger", "Disable")
    assert "ranger disabled" in page_text(app) and _state(app, "ranger") == "disabled"
    ranger.run()
    assert "Log in" in [b.label for b in ranger.button] and "disabled" in page_text(ranger)
    app = _act(app, "ranger", "Enable")
    assert _state(app, "ranger") == "active"
    assert "Logged in as **ranger**" in page_text(login(open_app(), "ranger", PASSWORD))


def test_an_admin_resets_a_password_and_removes_a_user(park: Seeded, factory: sessionmaker[Session]) -> None:
    app = _act(_users_page(), "ops", "Reset password", "a fresh long password")
    assert "password of ops reset" in page_text(app)
    with factory() as session:
        assert authenticate(session, "ops", "a fresh long password") is not None
        assert authenticate(session, "ops", PASSWORD) is None
    short = _act(app, "ops", "Reset password", "short")
    assert any("password too short" in str(e.value) for e in short.error)
    app = _act(app, "ops", "Remove")
    assert "ops removed" in page_text(app) and "ops" not in list(app.dataframe[0].value["name"])


def test_an_admin_cannot_disable_or_remove_themselves(park: Seeded) -> None:
    app = _act(_users_page(), "admin", "Disable")
    assert any("you cannot disable yourself" in str(e.value) for e in app.error)
    assert _state(app, "admin") == "active"
