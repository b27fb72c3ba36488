"""Dashboard logins that last: a signed session cookie (dashboard.session_cookie) over a
row per login (bearwatch.logins). In a real browser against a real `bearwatch dashboard`:
a reload and a link in a new tab stay logged in; logout, a password change, a disable and
the idle timeout end the session, and its cookie no longer logs anyone in; a forged or
tampered cookie is refused. The session rows themselves on both databases."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from itsdangerous import Signer
from sqlalchemy.orm import Session, sessionmaker

from bearwatch.logins import (
    LoginSession,
    SessionEnd,
    SessionLimits,
    check_session,
    current_login,
    exchange_token,
    open_session,
    revoke_session,
    token_hash,
)
from bearwatch.schema import DashboardSession, utcnow
from bearwatch.users import disable_user, set_password
from dashboard.session_cookie import COOKIE_NAME, KEY_FILE, cookie_value
from tests.dashboard.browser import CHROMIUM, CHROMIUM_ARGS, log_in, logged_in_as, login_form, needs_chromium
from tests.dashboard.seed import seed_park
from tests.dashboard.server import running_dashboard

IDLE_S = 6.0
LIMITS = SessionLimits(idle=timedelta(hours=12), lifetime=timedelta(days=7))



@pytest.fixture
def dashboard(factory: sessionmaker[Session], database_url: str, tmp_path: Path) -> Iterator[str]:
    seed_park(factory, tmp_path / "frames")
    with running_dashboard({"BEARWATCH_DATABASE_URL": database_url, "BEARWATCH_DATA_DIR": str(tmp_path)}) as url:
        yield url


@pytest.fixture
def idle_dashboard(factory: sessionmaker[Session], database_url: str, tmp_path: Path) -> Iterator[str]:
    seed_park(factory, tmp_path / "frames")
    env = {"BEARWATCH_DATABASE_URL": database_url, "BEARWATCH_DATA_DIR": str(tmp_path),
           "BEARWATCH_DASHBOARD_IDLE_TIMEOUT_S": str(IDLE_S)}
    with running_dashboard(env) as url:
        yield url


@pytest.fixture
def chromium() -> Iterator[Any]:
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def _page(context: Any) -> Any:
    page = context.new_page()
    page.set_default_timeout(20_000)
    return page


def _session_cookie(context: Any) -> dict[str, Any]:
    """The session cookie, once there: after a login on the main page the browser fetches
    it in the background while the first page shows (dashboard.login)."""
    deadline = time.monotonic() + 20
    while not (cookies := [c for c in context.cookies() if c["name"] == COOKIE_NAME]) and time.monotonic() < deadline:
        time.sleep(0.1)
    (cookie,) = cookies
    return dict(cookie)


def _with_cookie(browser: Any, url: str, value: str) -> Any:
    """A fresh browser (its own cookie jar) that holds only the given session cookie."""
    context = browser.new_context()
    context.add_cookies([{"name": COOKIE_NAME, "value": value, "url": url}])
    return context


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@needs_chromium
def test_a_login_lasts_through_a_reload_and_a_link_until_logout(
    dashboard: str, chromium: Any, factory: sessionmaker[Session]
) -> None:
    context = chromium.new_context()
    page = _page(context)
    handoffs: list[str] = []
    page.on("request", lambda request: handoffs.append(request.url) if "/bearwatch/session" in request.url else None)
    page.goto(f"{dashboard}/review")  # a link to the review page, not logged in: the login form
    page.get_by_role("dialog", name="Page not found").wait_for()  # Streamlit's, over the login form
    page.keyboard.press("Escape")
    login_form(page)
    log_in(page, "ranger")
    logged_in_as(page, "ranger")
    page.get_by_role("heading", name="Review").wait_for()  # the linked page, once logged in
    assert page.url == f"{dashboard}/review"

    cookie = _session_cookie(context)
    assert cookie["httpOnly"] and cookie["sameSite"] == "Lax" and not cookie["secure"]  # plain http here
    assert cookie["expires"] > time.time() + 6 * 86400, "kept across browser restarts, for the session lifetime"
    token = cookie["value"].rsplit(".", 1)[0]
    with factory() as session:
        stored = session.scalars(sa.select(DashboardSession.token_hash)).all()
    assert stored == [token_hash(token)], "the database holds only the token's hash"

    page.reload()
    logged_in_as(page, "ranger")
    page.get_by_role("heading", name="Review").wait_for()
    tab = _page(context)  # a link opened in a new tab
    tab.goto(f"{dashboard}/cameras")
    logged_in_as(tab, "ranger")
    tab.get_by_role("heading", name="Cameras").wait_for()
    tab.close()

    # The handoff URL worked once: again, even in the same browser, it sets no cookie.
    (handoff,) = handoffs
    again = context.request.get(handoff, max_redirects=0)
    assert again.status == 303 and "set-cookie" not in again.headers
    stranger = chromium.new_context()  # nor in another browser
    assert "set-cookie" not in stranger.request.get(handoff, max_redirects=0).headers

    page.get_by_role("button", name="Log out").click()
    login_form(page)
    assert COOKIE_NAME not in {c["name"] for c in context.cookies()}, "logging out clears the cookie"
    replay = _page(_with_cookie(chromium, dashboard, cookie["value"]))
    replay.goto(f"{dashboard}/review")
    assert "You were logged out" in login_form(replay), "the old cookie no longer logs in"
    with factory() as session:
        assert session.scalar(sa.select(DashboardSession.revoked_at)) is not None


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@needs_chromium
def test_a_login_on_the_main_page_opens_the_live_wall_without_loading_the_app_again(
    dashboard: str, chromium: Any, factory: sessionmaker[Session]
) -> None:
    context = chromium.new_context()
    page = _page(context)
    documents: list[str] = []  # every page load of the tab, redirects and the cookie route included
    page.on("request", lambda r: documents.append(r.url) if r.resource_type == "document" else None)
    page.goto(dashboard)
    login_form(page)
    log_in(page, "ranger")
    logged_in_as(page, "ranger")
    page.locator(".bw-tile").first.wait_for()  # the Live wall, in the page the login form was in
    cookie = _session_cookie(context)  # set meanwhile, by the browser's background request
    assert cookie["httpOnly"] and cookie["sameSite"] == "Lax"
    assert documents == [f"{dashboard}/"], "the app was not loaded a second time"
    with factory() as session:
        assert session.scalars(sa.select(DashboardSession.token_hash)).all() == [token_hash(cookie["value"].rsplit(".", 1)[0])]

    page.reload()  # the cookie logs the next page load in
    logged_in_as(page, "ranger")
    page.locator(".bw-tile").first.wait_for()
    page.get_by_role("button", name="Log out").click()
    login_form(page)
    assert COOKIE_NAME not in {c["name"] for c in context.cookies()}, "logging out clears the cookie"
    login_again = _page(context)
    login_again.goto(dashboard)
    login_form(login_again)
    log_in(login_again, "ranger")  # logged out at once in the same tab: the cookie set in the background goes too
    logged_in_as(login_again, "ranger")
    _session_cookie(context)
    login_again.get_by_role("button", name="Log out").click()
    login_form(login_again)
    assert COOKIE_NAME not in {c["name"] for c in context.cookies()}


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@needs_chromium
def test_a_password_change_or_a_disable_ends_an_open_session_and_its_cookie(
    dashboard: str, chromium: Any, factory: sessionmaker[Session], database_url: str, tmp_path: Path
) -> None:
    context = chromium.new_context()
    page = _page(context)
    page.goto(dashboard)
    login_form(page)
    log_in(page, "ranger")
    logged_in_as(page, "ranger")
    old_cookie = _session_cookie(context)["value"]
    changed = subprocess.run(  # an admin, with the CLI
        [sys.executable, "-m", "bearwatch", "user", "passwd", "ranger", "--password-stdin"],
        env={**os.environ, "BEARWATCH_DATABASE_URL": database_url, "BEARWATCH_DATA_DIR": str(tmp_path)},
        input="a brand new password\n", capture_output=True, text=True, timeout=120,
    )
    assert changed.returncode == 0, changed.stderr
    page.get_by_role("link", name="Cameras").click()  # the open session's next run
    assert "password was changed" in login_form(page)
    page.reload()
    assert "password was changed" in login_form(page), "the cookie no longer logs in either"

    log_in(page, "ranger", "a brand new password")
    logged_in_as(page, "ranger")
    with factory.begin() as session:
        disable_user(session, "ranger", utcnow())
    page.get_by_role("link", name="Cameras").click()
    assert "disabled" in login_form(page)
    replay = _page(_with_cookie(chromium, dashboard, old_cookie))
    replay.goto(dashboard)
    login_form(replay)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@needs_chromium
def test_an_idle_session_ends_in_its_tab_and_for_its_cookie(idle_dashboard: str, chromium: Any) -> None:
    context = chromium.new_context()
    page = _page(context)
    page.goto(idle_dashboard)
    login_form(page)
    log_in(page, "ranger")
    logged_in_as(page, "ranger")
    for i in range(3):  # activity keeps it open past the idle timeout
        time.sleep(IDLE_S / 3)
        page.get_by_role("link", name="Cameras" if i % 2 == 0 else "Review").click()
        page.wait_for_timeout(300)
    logged_in_as(page, "ranger")
    cookie = _session_cookie(context)["value"]
    page.close()  # nobody uses it now

    time.sleep(IDLE_S + 1)
    replay = _page(_with_cookie(chromium, idle_dashboard, cookie))
    replay.goto(idle_dashboard)
    assert "without activity" in login_form(replay)

    page = _page(context)  # a fresh login in a tab left open
    page.goto(idle_dashboard)
    login_form(page)
    log_in(page, "ranger")
    logged_in_as(page, "ranger")
    time.sleep(IDLE_S + 1)
    page.get_by_role("link", name="Cameras").click()
    assert "without activity" in login_form(page)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@needs_chromium
def test_a_forged_or_tampered_cookie_is_refused(
    dashboard: str, chromium: Any, factory: sessionmaker[Session], tmp_path: Path
) -> None:
    context = chromium.new_context()
    page = _page(context)
    page.goto(dashboard)
    login_form(page)
    log_in(page, "admin")
    logged_in_as(page, "admin")
    genuine = _session_cookie(context)["value"]
    token, signature = genuine.rsplit(".", 1)
    key = (tmp_path / KEY_FILE).read_bytes().strip()
    with factory() as session:  # a real session of ranger's, to sign a made-up token for
        ranger = current_login(session, "ranger")
    assert ranger is not None
    opened = open_session(factory, ranger, "test", utcnow(), LIMITS)
    assert opened is not None
    forgeries = {
        "tampered signature": f"{token}.{signature[:-2]}{'AA' if signature[-2:] != 'AA' else 'BB'}",
        "tampered token": f"{token[:-2]}{'xy' if token[-2:] != 'xy' else 'zw'}.{signature}",
        "signed with another key": Signer(b"not the dashboard's key" * 2, salt="bearwatch.dashboard.session")
        .sign(token).decode(),
        "unsigned": token,
        "right key, no such session": cookie_value(key, "a token nobody was given"),
        "the handoff token, never exchanged": cookie_value(key, opened[1]),
    }
    for what, value in forgeries.items():
        forged = _page(_with_cookie(chromium, dashboard, value))
        forged.goto(dashboard)
        forged.get_by_label("User name").or_(forged.get_by_text("Logged in as")).first.wait_for()
        assert forged.get_by_text("Logged in as").count() == 0, f"{what}: logged in"
        forged.context.close()
    control = _page(_with_cookie(chromium, dashboard, genuine))
    control.goto(dashboard)
    logged_in_as(control, "admin")


# The session rows, on both databases.


def _login(factory: sessionmaker[Session], name: str) -> LoginSession:
    with factory() as session:
        login = current_login(session, name)
    assert login is not None
    return login


@pytest.fixture
def users(factory: sessionmaker[Session], tmp_path: Path) -> None:
    seed_park(factory, tmp_path / "frames")


def test_a_page_run_reads_its_session_in_one_statement_and_writes_it_once_a_minute(
    users: None, factory: sessionmaker[Session], engine: sa.Engine
) -> None:
    start = utcnow()
    opened = open_session(factory, _login(factory, "ranger"), "10.0.0.1", start, LIMITS)
    assert opened is not None
    statements: list[str] = []

    def count(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        statements.append(statement)

    sa.event.listen(engine, "before_cursor_execute", count)
    try:
        per_run = []
        for seconds in (1, 30, 59, 61, 62):  # page runs this many seconds after the login
            statements.clear()
            check = check_session(factory, start + timedelta(seconds=seconds), LIMITS, session_id=opened[0].id)
            assert check.login is not None and check.login.actor.name == "ranger"
            verbs = [s.split()[0].upper() for s in statements]
            per_run.append([v for v in verbs if v in ("SELECT", "INSERT", "UPDATE", "DELETE")])  # not BEGIN, SET
    finally:
        sa.event.remove(engine, "before_cursor_execute", count)
    assert per_run == [["SELECT"]] * 3 + [["SELECT", "UPDATE"], ["SELECT"]]


def test_the_first_token_works_once_and_each_end_has_its_reason(users: None, factory: sessionmaker[Session]) -> None:
    now = utcnow()
    opened = open_session(factory, _login(factory, "ranger"), "10.0.0.1", now, LIMITS)
    assert opened is not None
    login, first = opened
    assert check_session(factory, now, LIMITS, token=first).ended is SessionEnd.UNKNOWN, "not a cookie's token"
    cookie_token = exchange_token(factory, first, now)
    assert cookie_token is not None and exchange_token(factory, first, now) is None, "a handoff works once"
    assert check_session(factory, now, LIMITS, token=first).ended is SessionEnd.UNKNOWN
    assert check_session(factory, now, LIMITS, token=cookie_token).login == login

    later = now + LIMITS.idle + timedelta(seconds=1)
    assert check_session(factory, later, LIMITS, token=cookie_token).ended is SessionEnd.IDLE
    assert check_session(factory, now + LIMITS.lifetime + timedelta(seconds=1), LIMITS,
                         session_id=login.id).ended is SessionEnd.EXPIRED
    with factory.begin() as session:
        set_password(session, "ranger", "a brand new password")
    assert check_session(factory, now, LIMITS, token=cookie_token).ended is SessionEnd.PASSWORD
    with factory.begin() as session:
        disable_user(session, "ranger", now)
    assert check_session(factory, now, LIMITS, token=cookie_token).ended is SessionEnd.DISABLED

    ops = open_session(factory, _login(factory, "ops"), "10.0.0.2", now, LIMITS)
    assert ops is not None
    revoke_session(factory, now, session_id=ops[0].id)
    assert check_session(factory, now, LIMITS, session_id=ops[0].id).ended is SessionEnd.REVOKED
    open_session(factory, _login(factory, "admin"), "10.0.0.3", later, LIMITS)  # prunes the ended ones
    with factory() as session:
        left = session.scalars(sa.select(DashboardSession.client_address)).all()
    assert left == ["10.0.0.3"]
