"""Logging in and out: a password form (users from `bearwatch user add`), or single
sign-on through st.login when [auth] and [bearwatch_sso] are in secrets.toml.

A password login is a dashboard session (bearwatch.logins) that outlives the page: this
tab keeps its id in st.session_state, and the browser keeps a signed cookie
(dashboard.session_cookie) that logs in every later page load, reload and link, until
logout, the idle timeout, the session lifetime, a password change or a disable.

After a login on the main page the tab goes straight on to the first page, and the browser
fetches the cookie route in the background (:func:`set_cookie_in_background`): sending the
tab itself there loaded the whole app a second time, the slowest part of the page after the
login (issue 16). A login from a link to another page still goes through the route, which
opens that page with its query.
"""

from __future__ import annotations

import json
import math
import time
from typing import Any
from urllib.parse import urlencode, urlsplit

import sqlalchemy as sa
import streamlit as st
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg
from streamlit.runtime.scriptrunner_utils.script_run_context import get_script_run_ctx

from bearwatch.auth import Actor
from bearwatch.errors import BearwatchError
from bearwatch.logins import (
    DashboardLogin,
    SessionCheck,
    SessionEnd,
    attempt_login,
    check_session,
    open_session,
    revoke_session,
)
from bearwatch.schema import utcnow
from bearwatch.sso import mapping_from_config, role_from_claims, user_name_from_claims
from dashboard.context import ACTOR_KEY, factory, settings
from dashboard.session_cookie import (
    COOKIE_NAME,
    browser_id,
    cookie_token,
    handoff_url,
    logout_url,
    safe_next,
    session_limits,
    signing_key,
)

LOGIN_KEY = "bearwatch_login"
ACTIVE_KEY = "bearwatch_last_active"
ENDED_KEY = "bearwatch_session_ended"
# A tab's cookies are those of its first request and never change: it reads them once.
COOKIE_READ_KEY = "bearwatch_cookie_read"
WANTED_KEY = "bearwatch_wanted_page"  # the URL the tab was opened at, for after the login
LEAVING_KEY = "bearwatch_leaving"  # the browser was sent to a cookie route: say so, not the form
HANDOFF_KEY = "bearwatch_cookie_handoff"  # a handoff URL for the browser to fetch on the next run
FETCHED_KEY = "bearwatch_cookie_fetched"  # this tab had its cookie set in the background

ENDED_MESSAGES = {
    SessionEnd.UNKNOWN: "Your session ended. Log in again.",
    SessionEnd.REVOKED: "You were logged out. Log in again.",
    SessionEnd.DISABLED: "Your account was disabled or removed. Ask an admin.",
    SessionEnd.PASSWORD: "Your password was changed, so this session ended. Log in with the new password.",
    SessionEnd.EXPIRED: "Your session reached its time limit. Log in again.",
    SessionEnd.IDLE: "You were logged out after a long time without activity. Log in again.",
}


def resolve_actor(sso: dict[str, Any] | None) -> Actor | None:
    """Who is logged in on this run. A password session is checked again on every run:
    a role change takes effect on the next page load; a removal, a disable, a password
    change (which may be the answer to a stolen session), a logout in another tab, or
    ``dashboard_idle_timeout_s`` without interaction ends it."""
    if sso is not None:
        return _sso_actor(sso)
    _remember_wanted_page()
    login = st.session_state.get(LOGIN_KEY)
    if not isinstance(login, DashboardLogin):
        return _actor_from_cookie()
    now = time.monotonic()
    if now - float(st.session_state.get(ACTIVE_KEY, now)) > settings().dashboard_idle_timeout_s:
        _revoke(login.id)
        _end(SessionEnd.IDLE)
        return None
    try:
        check = check_session(factory(), utcnow(), session_limits(settings()), session_id=login.id)
    except sa.exc.OperationalError:
        return login.actor  # database briefly unreachable: the pages say so themselves
    return _accept(check)


def _actor_from_cookie() -> Actor | None:
    """The session the browser's cookie names, on a tab's first run (a reload, a link)."""
    _store(None)
    if st.session_state.get(COOKIE_READ_KEY):
        return None
    value = st.context.cookies.get(COOKIE_NAME)
    token = cookie_token(signing_key(settings()), value) if value else None
    if token is None:  # no cookie, or one this dashboard did not sign: not logged in
        st.session_state[COOKIE_READ_KEY] = True
        return None
    try:
        check = check_session(factory(), utcnow(), session_limits(settings()), token=token)
    except sa.exc.OperationalError:
        return None  # not read yet: the next run tries again
    st.session_state[COOKIE_READ_KEY] = True
    return _accept(check)


def _accept(check: SessionCheck) -> Actor | None:
    if check.login is None:
        _end(check.ended or SessionEnd.UNKNOWN)
        return None
    st.session_state[ACTIVE_KEY] = time.monotonic()
    _store(check.login)
    return check.login.actor


def _end(why: SessionEnd) -> None:
    _store(None)
    st.session_state[ENDED_KEY] = ENDED_MESSAGES[why]


def _revoke(session_id: int) -> None:
    try:
        revoke_session(factory(), utcnow(), session_id=session_id)
    except sa.exc.OperationalError:
        pass  # the session still ends here; its cookie lasts until idle or logout


def _sso_actor(sso: dict[str, Any]) -> Actor | None:
    if not st.user.is_logged_in:
        st.session_state.pop(ACTOR_KEY, None)
        return None
    mapping = mapping_from_config(sso)
    claims = st.user.to_dict()
    role, name = role_from_claims(claims, mapping), user_name_from_claims(claims, mapping)
    actor = Actor(name, role) if role is not None and name else None
    _store(actor)
    return actor


def _store(login: DashboardLogin | Actor | None) -> None:
    """Keep (or forget) who is logged in: the Actor pages read, and for a password
    login its session. Callers set ACTIVE_KEY (the last activity) themselves."""
    if login is None:
        for key in (ACTOR_KEY, LOGIN_KEY, ACTIVE_KEY):
            st.session_state.pop(key, None)
    elif isinstance(login, DashboardLogin):
        st.session_state[ACTOR_KEY], st.session_state[LOGIN_KEY] = login.actor, login
    else:
        st.session_state[ACTOR_KEY] = login


def _client_address() -> str:
    """The websocket peer's address (behind a reverse proxy: the proxy's, so the pair
    and name keys still hold)."""
    address = getattr(st.context, "ip_address", None)
    return address if isinstance(address, str) and address else "unknown"


def _remember_wanted_page() -> None:
    """The page the tab was opened at (a link to the review page, say): before the login,
    Streamlit shows the login form at the main page's URL instead."""
    if WANTED_KEY not in st.session_state:
        query = urlencode(st.query_params.to_dict())  # st.context.url leaves the query out
        path = urlsplit(st.context.url or "/").path
        st.session_state[WANTED_KEY] = safe_next(path + (f"?{query}" if query else ""))


def _send_browser_to(url: str) -> None:
    """Have this tab load ``url`` (a cookie route). Streamlit has no public call for it;
    st.login and st.logout send this same message. It must not be followed by st.rerun:
    the rerun clears the messages not yet sent."""
    ctx = get_script_run_ctx()
    if ctx is not None:
        message = ForwardMsg()
        message.auth_redirect.url = url
        ctx.enqueue(message)


def login_view(sso: dict[str, Any] | None) -> None:
    st.title("bearwatch")
    if sso is not None:
        if st.user.is_logged_in:
            st.error("Your account has no bearwatch role. Ask an admin to add you to a bearwatch group.")
            st.button("Log out", on_click=st.logout)
            return
        provider = mapping_from_config(sso).provider
        if st.button("Log in with single sign-on", type="primary"):
            if provider:
                st.login(provider)
            else:
                st.login()
        return
    if leaving := st.session_state.pop(LEAVING_KEY, None):
        st.info(leaving)  # the browser is on its way to a cookie route
        return
    if ended := st.session_state.get(ENDED_KEY):
        st.info(ended)
    with st.form("login", clear_on_submit=True, enter_to_submit=True):
        name = st.text_input("User name", key="login_name", autocomplete="username")
        password = st.text_input("Password", type="password", key="login_password", autocomplete="current-password")
        submitted = st.form_submit_button("Log in", type="primary")
    if submitted:
        _log_in(name.strip(), password)


def _log_in(name: str, password: str) -> None:
    address = _client_address()
    try:
        attempt = attempt_login(factory(), name, password, address, utcnow())
        opened = None if attempt.session is None else open_session(
            factory(), attempt.session, address, utcnow(), session_limits(settings()))
    except (BearwatchError, sa.exc.OperationalError) as exc:
        st.error(f"Cannot log in right now: {exc}")
        return
    if attempt.wait_s > 0:
        st.error(f"Too many failed logins; try again in {_human_wait(attempt.wait_s)}.")
        return
    if opened is None:
        st.error("Wrong user name or password.")
        return
    login, token = opened
    st.session_state.pop(ENDED_KEY, None)
    st.session_state[COOKIE_READ_KEY] = True  # this tab's cookies predate the login
    st.session_state[ACTIVE_KEY] = time.monotonic()
    _store(login)
    browser = browser_id(st.context.cookies)
    wanted = safe_next(st.session_state.get(WANTED_KEY))
    if browser and wanted != "/":  # a link to another page: the route sets the cookie and opens it
        _send_browser_to(handoff_url(signing_key(settings()), token, browser, wanted))
        st.success("Logged in. Opening the page…")
        return
    if browser:  # else no Streamlit XSRF cookie (AppTest, protection off): this tab only
        st.session_state[HANDOFF_KEY] = handoff_url(signing_key(settings()), token, browser, "/")
    st.rerun()


# fetch() follows no redirect here (the route's 303 to the app would load its page for
# nothing); a Set-Cookie on the redirect response is kept all the same.
_FETCH_COOKIE = '<script>fetch(%s, {credentials: "same-origin", redirect: "manual", cache: "no-store"});</script>'


def set_cookie_in_background() -> None:
    """On the first run after a login on the main page: the browser fetches the cookie
    route (the handoff: signed, bound to this browser, good once) while the tab shows the
    first page. Render it where it stays for the run (the sidebar): the script runs when
    the element mounts, and the fetch goes on when a later run removes it."""
    url = st.session_state.pop(HANDOFF_KEY, None)
    if isinstance(url, str):
        st.session_state[FETCHED_KEY] = True
        st.html(_FETCH_COOKIE % json.dumps(url), unsafe_allow_javascript=True)


def _human_wait(seconds: float) -> str:
    return f"{math.ceil(seconds)} s" if seconds < 90 else f"{math.ceil(seconds / 60)} min"


def logout(sso: dict[str, Any] | None) -> None:
    """The Log out button's callback (run before the page, which then shows the login
    form): revoke the session, then have the browser clear its cookie."""
    login = st.session_state.get(LOGIN_KEY)
    _store(None)
    st.session_state.pop(ENDED_KEY, None)
    if sso is not None:
        st.logout()
        return
    if isinstance(login, DashboardLogin):
        _revoke(login.id)
    browser = browser_id(st.context.cookies)
    # The tab's cookies are those of its first request: a cookie set in the background
    # since (set_cookie_in_background) is not among them.
    fetched = st.session_state.pop(FETCHED_KEY, False)
    if browser and (fetched or COOKIE_NAME in st.context.cookies):
        _send_browser_to(logout_url(signing_key(settings()), browser))
        st.session_state[LEAVING_KEY] = "Logging out…"
