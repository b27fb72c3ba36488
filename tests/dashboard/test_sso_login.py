"""Single sign-on in the dashboard. The identity provider is simulated: AppTest sets
st.user as Streamlit would after a real st.login round trip (no identity provider can
run here), and the [auth] secrets are given to AppTest directly."""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

from tests.dashboard.conftest import open_app, page_text
from tests.dashboard.seed import Seeded

# The database plays no part in single sign-on: SQLite only.
pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)

SECRETS = {
    "auth": {"redirect_uri": "http://127.0.0.1:8501/oauth2callback", "cookie_secret": "x" * 32,
             "client_id": "bearwatch", "client_secret": "s", "server_metadata_url": "https://idp.example/.well-known/openid-configuration"},
    "bearwatch_sso": {"roles_claim": "groups", "admin": ["bw-admins"], "ops": ["bw-ops"], "ranger": ["rangers"]},
}


def _sso_app(user: dict[str, object]) -> AppTest:
    app = open_app()
    app.secrets = SECRETS
    app.user = user
    return app.run()


def test_not_signed_in_sees_only_the_sign_on_button(park: Seeded) -> None:
    app = _sso_app({"is_logged_in": False})
    assert not app.exception
    assert [b.label for b in app.button] == ["Log in with single sign-on"]
    assert not app.text_input, "no password form when single sign-on is configured"
    assert "bw-tile" not in page_text(app)


def test_a_ranger_group_sees_the_live_wall(park: Seeded) -> None:
    app = _sso_app({"is_logged_in": True, "email": "rick@park.example", "groups": ["rangers"]})
    assert not app.exception
    assert "Logged in as **rick@park.example** (ranger)" in page_text(app)
    assert "bw-tile" in page_text(app)


def test_an_account_without_a_bearwatch_group_sees_nothing(park: Seeded) -> None:
    app = _sso_app({"is_logged_in": True, "email": "hr@park.example", "groups": ["hr"]})
    assert not app.exception
    assert "Your account has no bearwatch role" in app.error[0].value
    assert "bw-tile" not in page_text(app) and [b.label for b in app.button] == ["Log out"]
