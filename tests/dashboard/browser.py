"""What the Playwright browser tests share: Debian's chromium, how it is started, the skip
when it is missing, and logging in through the dashboard's login form with the keyboard,
waiting out Streamlit's overlap of one run's page with the next."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.dashboard.seed import PASSWORD

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]
needs_chromium = pytest.mark.skipif(not CHROMIUM.exists(), reason="chromium missing: run scripts/install-system-deps.sh")


def log_in(page: Any, name: str, password: str = PASSWORD) -> None:
    """Type a login into the form on screen. Wait for it with login_form first: keys typed
    into a form that the next run is about to replace are lost, and the login never happens."""
    page.get_by_label("User name").focus()
    page.keyboard.type(name)
    page.keyboard.press("Tab")
    page.keyboard.type(password)
    page.keyboard.press("Enter")


def logged_in_as(page: Any, name: str) -> None:
    page.get_by_text(f"Logged in as {name}").wait_for()
    # A login on the main page reruns the same page (no reload): Streamlit shows the new
    # sidebar before it removes the last run's form, so wait for the form to go.
    page.get_by_label("User name").wait_for(state="detached")


def login_form(page: Any) -> str:
    """Wait for the login form; what the page says above it."""
    page.get_by_label("User name").wait_for()
    # Streamlit shows the new run's form before it removes the last run's sidebar: wait for
    # "Logged in as" to go (it never does while the session is still open: a timeout).
    page.get_by_text("Logged in as").wait_for(state="detached")
    return str(page.get_by_test_id("stMain").inner_text())
