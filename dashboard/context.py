"""What every page shares: the settings and engine (once per process), and who is
logged in. Pages call :func:`page_actor` first; it stops the page for anyone whose
role is too low, so a page never relies on being hidden from the navigation alone."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import streamlit as st
from sqlalchemy.orm import Session, sessionmaker

from bearwatch.auth import Actor
from bearwatch.db import make_engine, session_factory
from bearwatch.localtime import local_text, park_zone, when_html
from bearwatch.schema import Role
from bearwatch.settings import Settings, load_settings
from dashboard.metrics import serve_dashboard_metrics
from dashboard.queries.frames import site_names
from dashboard.tiles import thumbnail_b64
from shadow.sites import site_zones

ACTOR_KEY = "bearwatch_actor"


@st.cache_resource
def settings() -> Settings:
    return load_settings()


@st.cache_resource
def _factory(url: str) -> sessionmaker[Session]:
    # One engine per dashboard process, made on first use.
    return session_factory(make_engine(url))


@st.cache_resource
def metrics_server() -> int | None:
    """Serve this dashboard process's /metrics once, when a port is configured (already
    done before Streamlit started when run by `bearwatch dashboard`: dashboard.serve)."""
    return serve_dashboard_metrics(settings())


def factory() -> sessionmaker[Session]:
    return _factory(settings().database_url)


def sso_section() -> dict[str, Any] | None:
    """The [bearwatch_sso] mapping when single sign-on is configured ([auth] and
    [bearwatch_sso] in Streamlit's secrets.toml), else None (password login)."""
    try:
        if "auth" not in st.secrets or "bearwatch_sso" not in st.secrets:
            return None
        return dict(st.secrets["bearwatch_sso"])
    except FileNotFoundError:  # no secrets.toml at all
        return None


def current_actor() -> Actor | None:
    actor = st.session_state.get(ACTOR_KEY)
    return actor if isinstance(actor, Actor) else None


def page_actor(role: Role) -> Actor:
    """The logged-in actor, or stop this page: nobody sees anything without logging in,
    and a role below ``role`` sees only a refusal."""
    actor = current_actor()
    if actor is None:
        st.warning("Log in to see this page.")
        st.stop()
    assert actor is not None
    if not actor.may(role):
        st.error(f"This page needs the {role.value} role; you are {actor.role.value}.")
        st.stop()
    return actor


@st.cache_data(max_entries=1024, show_spinner=False)
def thumbnail_cached(path: str) -> str | None:
    """A stored frame's thumbnail (dashboard.tiles) for the live wall and latest frames.
    Stored frames never change, so a path is a safe cache key."""
    return thumbnail_b64(settings().frames_dir / path)


@st.cache_data(ttl=60, show_spinner=False)
def site_names_cached(database_url: str) -> list[str]:
    """Every site's name for the pages' site pickers (the URL keys the cache)."""
    with factory()() as session:
        return site_names(session)


@st.cache_data(ttl=60, show_spinner=False)
def _zones_cached(database_url: str) -> dict[str, str]:
    with factory()() as session:
        return site_zones(session)


def zone_of(site: str | None = None) -> str:
    """The time zone a page shows ``site``'s times in; for no site (users, models,
    park-wide lists) the park's (bearwatch.localtime.park_zone)."""
    zones = _zones_cached(settings().database_url)
    return zones[site] if site in zones else park_zone(zones.values())


def when(moment: datetime | None, site: str | None = None, *, seconds: bool = False, date: bool = True) -> str:
    """A stored (UTC) time as ``site``'s clock reads it, zone named: for tables and text."""
    return local_text(moment, zone_of(site), seconds=seconds, date=date)


def when_hover(moment: datetime | None, site: str | None = None, *, seconds: bool = False) -> str:
    """:func:`when` with the UTC time on hover, for markdown with unsafe_allow_html."""
    return when_html(moment, zone_of(site), seconds=seconds)


def site_and_days(prefix: str) -> tuple[str, int]:
    """The site and look-back picker of the per-site charts pages (keys ``<prefix>_site``,
    ``<prefix>_days``); stops the page when the park has no site yet."""
    names = site_names_cached(settings().database_url)
    if not names:
        st.info("No sites yet.")
        st.stop()
    left, right = st.columns([2, 1])
    site = left.selectbox("Site", names, key=f"{prefix}_site")
    days = right.selectbox("Days", [7, 14, 30, 90], index=2, key=f"{prefix}_days")
    return str(site), int(days)
