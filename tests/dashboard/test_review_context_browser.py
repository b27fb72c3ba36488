"""The Review page's frame context in a real browser (Debian's chromium via Playwright,
a real `bearwatch dashboard` process, SQLite): a ranger sees the strip of the camera's
frames (pictures loaded, the frame under review outlined) and the score chart drawn,
turns the heat map on and zooms with the keyboard only (the widgets, then the single keys
h, z and o), and the verdict key works right after, without touching the mouse."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from bearwatch.schema import Decision, Stage, User, Verdict, utcnow
from shadow.alerts import process_new_flags
from shadow.rollout import record_stage_change
from shadow.sites import get_site
from tests.conftest import wait_for
from tests.dashboard.browser import CHROMIUM, CHROMIUM_ARGS, log_in, logged_in_as, login_form, needs_chromium
from tests.dashboard.seed import seed_park
from tests.dashboard.server import running_dashboard
from tests.dashboard.test_frame_context import _add_frames, _add_heatmap

playwright_sync = pytest.importorskip("playwright.sync_api")

pytestmark = [
    pytest.mark.parametrize("database_url", ["sqlite"], indirect=True),  # the browser part does not depend on it
    needs_chromium,
]


@pytest.fixture
def dashboard(factory: sessionmaker[Session], database_url: str, tmp_path: Path) -> Iterator[str]:
    """north in a limited trial: creek's flagged frame (with a heat map and three earlier
    frames) is the held alert a ranger sees first."""
    now = utcnow()
    park = seed_park(factory, tmp_path / "frames")
    with factory.begin() as session:
        record_stage_change(session, get_site(session, "north"), Stage.LIMITED, actor="ops", reason="trial",
                            now=now - timedelta(hours=1), trial=(now - timedelta(hours=1), now + timedelta(days=7)))
    _add_frames(factory, tmp_path / "frames", park.camera_ids["creek"], park.model_id,
                [(now - timedelta(minutes=20 - 5 * i), 0.1 + 0.1 * i) for i in range(3)])
    with factory() as session:
        flagged = session.scalar(sa.text("SELECT id FROM frames WHERE camera_id = :c ORDER BY captured_at DESC LIMIT 1")
                                 .bindparams(c=park.camera_ids["creek"]))
    _add_heatmap(factory, flagged, park.model_id)
    process_new_flags(factory, utcnow())
    env = {"BEARWATCH_DATABASE_URL": database_url, "BEARWATCH_DATA_DIR": str(tmp_path)}
    with running_dashboard(env) as url:
        yield url


def test_ranger_sees_the_context_and_zooms_and_decides_with_the_keyboard(
    dashboard: str, factory: sessionmaker[Session], tmp_path: Path
) -> None:
    def verdicts() -> list[Verdict]:
        with factory() as session:
            return list(session.scalars(sa.select(Decision.verdict).join(User, User.id == Decision.reviewer_id)
                                        .where(User.name == "ranger")))

    with playwright_sync.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1400})
        page.set_default_timeout(60_000)
        page.goto(f"{dashboard}/")
        login_form(page)
        log_in(page, "ranger")
        logged_in_as(page, "ranger")
        page.get_by_role("link", name="Review").click()
        page.get_by_text("confirming sends the alert").wait_for()

        # The strip: four frames of creek, the one under review outlined, every picture loaded.
        page.locator(".bw-strip-current").wait_for()
        assert page.locator(".bw-strip-frame").count() == 4
        assert "this frame" in page.locator(".bw-strip-current").inner_text()
        loaded = page.locator(".bw-strip img").evaluate_all("imgs => imgs.map(i => i.complete && i.naturalWidth > 0)")
        assert loaded == [True] * 4
        # The score chart is drawn.
        page.locator("[data-testid='stVegaLiteChart'] canvas, [data-testid='stVegaLiteChart'] svg").first.wait_for()

        # Heat map on, from the keyboard: focus the toggle, Space; off and on again with h.
        toggle = page.locator(".st-key-review_heatmap input")
        assert toggle.is_enabled()
        toggle.focus()
        page.keyboard.press("Space")
        page.get_by_text("red is where demo-bear looked most").wait_for()
        page.wait_for_function("() => { const d = window.parent.document; return d.activeElement === d.body; }")
        page.keyboard.press("h")
        page.get_by_text("red is where demo-bear looked most").wait_for(state="detached")
        page.keyboard.press("h")
        page.get_by_text("red is where demo-bear looked most").wait_for()

        # Zoom 2x from the keyboard: focus the selectbox, type to pick the option, Enter.
        page.wait_for_function("() => { const d = window.parent.document; return d.activeElement === d.body; }")
        page.locator(".st-key-review_zoom input").focus()
        page.keyboard.type("2")
        page.get_by_role("option", name="2×", exact=True).wait_for()
        page.keyboard.press("Enter")
        page.get_by_text("zoom 2× on the centre").wait_for()
        # Single keys: z zooms one step further, o centres the zoom on the next spot (the heat map's peak).
        page.wait_for_function("() => { const d = window.parent.document; return d.activeElement === d.body; }")
        page.keyboard.press("z")
        page.get_by_text("zoom 3× on the centre").wait_for()
        page.keyboard.press("o")
        page.get_by_text("zoom 3× on the heat map peak").wait_for()
        page.screenshot(path=str(tmp_path / "review-context.png"))

        # The focus has left the widgets, so the verdict key works at once.
        page.wait_for_function("() => { const d = window.parent.document; return d.activeElement === d.body; }")
        page.keyboard.press("d")
        wait_for("the dismiss to reach the database", lambda: verdicts() == [Verdict.DISMISS], timeout=30.0)
        browser.close()
