"""Logging in and out: a password form (users from `bearwatch user add`), or single
sign-on through st.login when [auth] and [bearwatch_sso] are in secrets.toml."""

from __future__ import annotations

import math
import time
from typing import Any

import sqlalchemy as sa
import streamlit as st

from bearwatch.auth import Actor
from bearwatch.errors import BearwatchError
from bearwatch.logins import LoginSession, attempt_login, current_login
from bearwatch.schema import utcnow
from bearwatch.sso import mapping_from_config, role_from_claims, user_name_from_claims
from dashboard.context import ACTOR_KEY, factory, settings

LOGIN_KEY = "bearwatch_login"
ACTIVE_KEY = "bearwatch_last_active"
ENDED_KEY = "bearwatch_session_ended"


def resolve_actor(sso: dict[str, Any] | None) -> Actor | None:
    """Who is logged in on this run. A password user's login is checked again on every
    run: a role change takes effect on the next page load; a removal, a disable, a
    password change (which may be the answer to a stolen session) or
    ``dashboard_idle_timeout_s`` without interaction ends the session."""
    if sso is not None:
        return _sso_actor(sso)
    login = st.session_state.get(LOGIN_KEY)
    if not isinstance(login, LoginSession):
        _store(None)
        return None
    now = time.monotonic()
    if now - float(st.session_state.get(ACTIVE_KEY, now)) > settings().dashboard_idle_timeout_s:
        _end("You were logged out after a long time without activity. Log in again.")
        return None
    try:
        with factory()() as session:
            fresh = current_login(session, login.actor.name)
    except sa.exc.OperationalError:
        return login.actor  # database briefly unreachable: the pages say so themselves
    if fresh is None:
        _end("Your account was disabled or removed. Ask an admin.")
        return None
    if fresh.epoch != login.epoch:
        _end("Your password was changed, so this session ended. Log in with the new password.")
        return None
    st.session_state[ACTIVE_KEY] = now
    _store(fresh)
    return fresh.actor


def _end(reason: str) -> None:
    _store(None)
    st.session_state[ENDED_KEY] = reason


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


def _store(login: LoginSession | Actor | None) -> None:
    """Keep (or forget) who is logged in: the Actor pages read, and for a password
    login its epoch. Callers set ACTIVE_KEY (the last activity) themselves."""
    if login is None:
        for key in (ACTOR_KEY, LOGIN_KEY, ACTIVE_KEY):
            st.session_state.pop(key, None)
    elif isinstance(login, LoginSession):
        st.session_state[ACTOR_KEY], st.session_state[LOGIN_KEY] = login.actor, login
    else:
        st.session_state[ACTOR_KEY] = login


def _client_address() -> str:
    """The websocket peer's address (behind a reverse proxy: the proxy's, so the pair
    and name keys still hold)."""
    address = getattr(st.context, "ip_address", None)
    return address if isinstance(address, str) and address else "unknown"


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
    if ended := st.session_state.get(ENDED_KEY):
        st.info(ended)
    with st.form("login", clear_on_submit=True, enter_to_submit=True):
        name = st.text_input("User name", key="login_name", autocomplete="username")
        password = st.text_input("Password", type="password", key="login_password", autocomplete="current-password")
        submitted = st.form_submit_button("Log in", type="primary")
    if not submitted:
        return
    try:
        attempt = attempt_login(factory(), name.strip(), password, _client_address(), utcnow())
    except (BearwatchError, sa.exc.OperationalError) as exc:
        st.error(f"Cannot log in right now: {exc}")
        return
    if attempt.wait_s > 0:
        st.error(f"Too many failed logins; try again in {_human_wait(attempt.wait_s)}.")
        return
    if attempt.session is None:
        st.error("Wrong user name or password.")
        return
    st.session_state.pop(ENDED_KEY, None)
    st.session_state[ACTIVE_KEY] = time.monotonic()
    _store(attempt.session)
    st.rerun()


def _human_wait(seconds: float) -> str:
    return f"{math.ceil(seconds)} s" if seconds < 90 else f"{math.ceil(seconds / 60)} min"


def logout(sso: dict[str, Any] | None) -> None:
    _store(None)
    if sso is not None:
        st.logout()
    else:
        st.rerun()
