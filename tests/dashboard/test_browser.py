"""End to end in a real browser: Playwright drives Debian's chromium against a real
`bearwatch dashboard` process on a loopback port, on a seeded SQLite park (plus sites
with simulated history). A ranger logs in with the keyboard and watches the live wall;
an admin opens every page; a ranger confirms a held alert with the keyboard's `c`; ops
promote a site whose gate passes. Each page is screenshotted (to the test's tmp_path: the
README's screenshots in docs/screenshots/ come from the demo, by scripts/screenshots.py)."""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.orm import Session, sessionmaker

from tests.conftest import wait_for
from tests.dashboard.browser import CHROMIUM, CHROMIUM_ARGS, log_in, logged_in_as, login_form, needs_chromium
from tests.dashboard.history import build_gate_sites, build_lake
from tests.dashboard.seed import SECRET, seed_park
from tests.dashboard.server import running_dashboard
from tests.ingest.helpers import free_port

playwright_sync = pytest.importorskip("playwright.sync_api")

pytestmark = [
    pytest.mark.parametrize("database_url", ["sqlite"], indirect=True),  # the browser part does not depend on it
    needs_chromium,
]


@pytest.fixture
def metrics_port() -> int:
    return free_port()


@pytest.fixture
def dashboard(factory: sessionmaker[Session], database_url: str, tmp_path: Path, metrics_port: int) -> Iterator[str]:
    seed_park(factory, tmp_path / "frames")
    _history(factory, tmp_path)
    env = {"BEARWATCH_DATABASE_URL": database_url, "BEARWATCH_DATA_DIR": str(tmp_path),
           "BEARWATCH_DASHBOARD_METRICS_PORT": str(metrics_port)}
    with running_dashboard(env) as url:
        yield url


def _history(factory: sessionmaker[Session], root: Path) -> None:
    """north in a limited trial with creek's flagged frame held for a ranger; oak (gate
    passes), pine (fails) and willow (weeks of rollout history) for the ops pages."""
    from datetime import timedelta

    from bearwatch.schema import Stage, utcnow
    from shadow.alerts import process_new_flags
    from shadow.rollout import record_stage_change
    from shadow.sites import get_site

    now = utcnow()
    with factory.begin() as session:
        record_stage_change(session, get_site(session, "north"), Stage.LIMITED, actor="ops", reason="trial",
                            now=now - timedelta(hours=1), trial=(now - timedelta(hours=1), now + timedelta(days=7)))
    process_new_flags(factory, utcnow())
    build_gate_sites(factory, root, now)
    build_lake(factory, root, now)


def _pick(page: Any, key: str, option: str) -> None:
    """Choose ``option`` in the selectbox with widget key ``key``."""
    page.locator(f".st-key-{key}").click()
    page.get_by_role("option", name=option, exact=True).click()


def _open(page: Any, link: str, heading: str) -> None:
    page.get_by_role("link", name=link).click()
    page.get_by_role("heading", name=heading).wait_for()


def test_ranger_watches_the_live_wall_and_admin_opens_every_page(dashboard: str, metrics_port: int, tmp_path: Path) -> None:
    shots = tmp_path / "screenshots"
    shots.mkdir()
    with playwright_sync.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1280, "height": 860})
        page = context.new_page()
        page.set_default_timeout(20_000)

        page.goto(f"{dashboard}/users")  # a page URL without logging in: the app's main page, the login form
        page.wait_for_url(f"{dashboard}/")
        login_form(page)
        assert page.locator(".bw-tile").count() == 0 and page.get_by_role("heading", name="Users").count() == 0
        assert "_streamlit_xsrf" in {c["name"] for c in context.cookies()}, "XSRF protection is on"

        page.goto(f"{dashboard}/")
        login_form(page)
        page.screenshot(path=str(shots / "login.png"))

        log_in(page, "ranger")
        logged_in_as(page, "ranger")
        page.locator(".bw-tile").nth(2).wait_for()
        assert page.locator(".bw-tile").count() == 3
        flagged = page.locator(".bw-flagged")
        assert flagged.get_attribute("data-camera") == "creek"
        assert flagged.evaluate("e => getComputedStyle(e).borderTopColor") == "rgb(211, 47, 47)", "red outline"
        assert flagged.locator("img").evaluate("img => img.naturalWidth") == 160, "the frame itself is shown"
        assert "STALE" in page.locator(".bw-stale").inner_text()
        assert "DARK" in page.locator(".bw-dark").inner_text()
        sidebar = page.get_by_test_id("stSidebar").inner_text()
        assert "Cameras" in sidebar and "Users" not in sidebar and "Models" not in sidebar
        page.screenshot(path=str(shots / "live-wall.png"))
        page.get_by_role("link", name="Recent frames of creek").click()  # the camera's recent frames
        page.get_by_role("heading", name="Latest frames").wait_for()
        page.locator(".bw-tile").first.wait_for()
        assert {t.get_attribute("data-camera") for t in page.locator(".bw-tile").all()} == {"creek"}
        assert page.locator(".bw-flagged").first.evaluate("e => getComputedStyle(e).borderTopColor") == \
            "rgb(211, 47, 47)", "a flag outlined in red as on the live wall"
        page.get_by_role("link", name="Live wall").click()
        page.locator(".bw-tile").nth(2).wait_for()

        page.get_by_role("button", name="Log out").click()
        login_form(page)
        log_in(page, "admin")
        logged_in_as(page, "admin")
        page.locator(".bw-tile").first.wait_for()
        for link, shot in (("Latest frames", "latest-frames"), ("Cameras", "cameras"), ("Rollout", "rollout"),
                           ("Models", "models"), ("Users", "users")):
            _open(page, link, link)
            if link != "Latest frames":
                page.get_by_test_id("stDataFrame").first.wait_for()
                page.wait_for_timeout(1000)  # the table is a canvas: let it paint before the screenshot
            else:
                page.locator(".bw-tile").first.wait_for()
            assert SECRET not in page.content()
            page.screenshot(path=str(shots / f"{shot}.png"))
        browser.close()
    for shot in ("login", "live-wall", "latest-frames", "cameras", "rollout", "models", "users"):
        assert (shots / f"{shot}.png").stat().st_size > 10_000
    # the dashboard process serves its own /metrics: how long each page took, page by page
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as resp:
        metrics = resp.read().decode()
    for title in ("Live wall", "Cameras", "Rollout", "Models", "Users"):
        assert f'bearwatch_dashboard_page_seconds_count{{page="{title}"}}' in metrics, title


def test_ranger_confirms_with_the_keyboard_and_ops_promote_a_passing_site(
    dashboard: str, factory: sessionmaker[Session], tmp_path: Path
) -> None:
    import sqlalchemy as sa

    from bearwatch.schema import Decision, Site, StageChange, User, Verdict

    shots = tmp_path / "screenshots"
    shots.mkdir()

    def verdicts() -> list[Verdict]:  # the ranger's own (the simulated sites have simulated rangers' too)
        with factory() as session:
            return list(session.scalars(sa.select(Decision.verdict).join(User, User.id == Decision.reviewer_id).where(User.name == "ranger")))

    with playwright_sync.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
        page.set_default_timeout(20_000)
        page.goto(f"{dashboard}/")
        login_form(page)
        log_in(page, "ranger")
        logged_in_as(page, "ranger")
        _open(page, "Review", "Review")
        page.get_by_text("confirming sends the alert").wait_for()
        page.get_by_text("held alert").first.wait_for()
        page.get_by_test_id("stImage").first.wait_for()
        page.screenshot(path=str(shots / "review.png"))
        page.evaluate("document.activeElement && document.activeElement.blur()")  # keys go to the page, not a widget
        page.keyboard.press("c")
        wait_for("the confirm to reach the database", lambda: verdicts() == [Verdict.CONFIRM], timeout=60.0)
        page.get_by_text("the alert is sent").wait_for()
        assert "confirming sends the alert" not in page.get_by_test_id("stMain").inner_text(), "the next frame is shown"

        page.get_by_role("button", name="Log out").click()
        login_form(page)
        log_in(page, "ops")
        logged_in_as(page, "ops")
        page.locator(".bw-tile").first.wait_for()
        for link, key, site, shot in (("Alert rates", "rates_site", "willow", "alert-rates"), ("Drift", "drift_site", "willow", "drift")):
            _open(page, link, link)
            _pick(page, key, site)
            page.get_by_text(f"{site} is manual").wait_for()
            page.locator("[data-testid='stVegaLiteChart'] canvas, [data-testid='stVegaLiteChart'] svg").first.wait_for()
            page.wait_for_timeout(800)  # let the charts finish drawing
            page.screenshot(path=str(shots / f"{shot}.png"), full_page=True)
        _open(page, "Rollout", "Rollout")
        _pick(page, "rollout_site", "oak")
        page.get_by_role("heading", name="oak: manual").wait_for()
        page.get_by_label("Reason").first.fill("shadow numbers are good")
        page.get_by_role("button", name="Promote").click()
        page.get_by_text("oak promoted to limited").wait_for()
        with factory() as session:
            row = session.execute(
                sa.select(StageChange.to_stage, StageChange.actor, StageChange.reason).join(Site, Site.id == StageChange.site_id)
                .where(Site.name == "oak").order_by(StageChange.id.desc()).limit(1)
            ).one()
        assert (row.to_stage.value, row.actor, row.reason) == ("limited", "ops", "shadow numbers are good")
        browser.close()
    for shot in ("review", "alert-rates", "drift"):
        assert (shots / f"{shot}.png").stat().st_size > 10_000
