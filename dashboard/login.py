"""Logging in and out: a password form (users from `bearwatch user add`), or single
sign-on through st.login when [auth] and [bearwatch_sso] are in secrets.toml."""

from __future__ import annotations

import time
from typing import Any

import sqlalchemy as sa
import streamlit as st

from bearwatch.auth import Actor, actor_for_user
from bearwatch.errors import BearwatchError, NotFound
from bearwatch.sso import mapping_from_config, role_from_claims, user_name_from_claims
from bearwatch.users import authenticate
from dashboard.context import ACTOR_KEY, current_actor, factory, login_throttle


def resolve_actor(sso: dict[str, Any] | None) -> Actor | None:
    """Who is logged in on this run. A password user's role is read again on every
    run, so a role change or removal takes effect on the next page load."""
    if sso is not None:
        return _sso_actor(sso)
    actor = current_actor()
    if actor is None:
        return None
    try:
        with factory()() as session:
            fresh = actor_for_user(session, actor.name)
    except NotFound:
        fresh = None
    except sa.exc.OperationalError:
        return actor  # database briefly unreachable: the pages say so themselves
    if fresh != actor:
        _store(fresh)
    return fresh


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


def _store(actor: Actor | None) -> None:
    if actor is None:
        st.session_state.pop(ACTOR_KEY, None)
    else:
        st.session_state[ACTOR_KEY] = actor


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
    with st.form("login", clear_on_submit=True, enter_to_submit=True):
        name = st.text_input("User name", key="login_name", autocomplete="username")
        password = st.text_input("Password", type="password", key="login_password", autocomplete="current-password")
        submitted = st.form_submit_button("Log in", type="primary")
    if not submitted:
        return
    name = name.strip()
    throttle = login_throttle()
    wait_s = throttle.wait_s(name, time.monotonic())
    if wait_s > 0:
        st.error(f"Too many failed logins for this name; try again in {wait_s / 60:.0f} min.")
        return
    try:
        with factory().begin() as session:
            actor = authenticate(session, name, password)
    except (BearwatchError, sa.exc.OperationalError) as exc:
        st.error(f"Cannot log in right now: {exc}")
        return
    if actor is None:
        throttle.failed(name, time.monotonic())
        st.error("Wrong user name or password.")
        return
    throttle.succeeded(name)
    _store(actor)
    st.rerun()


def logout(sso: dict[str, Any] | None) -> None:
    st.session_state.pop(ACTOR_KEY, None)
    if sso is not None:
        st.logout()
    else:
        st.rerun()
