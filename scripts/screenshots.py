"""The README's and docs' dashboard screenshots (docs/screenshots/*.png), taken from the demo.

    .venv/bin/python scripts/screenshots.py [--data-dir DIR] [--out docs/screenshots]

Runs `bearwatch demo` with its dashboard (bench/demo_park.py: the demo's park, footage,
model and meadow's three weeks of history, in bearwatch-data/bench-demo/, built once and
reused; a trained demo model is copied in from bearwatch-data/demo/ or
$BEARWATCH_TEST_ASSETS when there is one), adds the users `ranger`, `ops` and `admin`, and
photographs every page in Debian's chromium (Playwright) as the role that uses it: the live
wall and review as a ranger, alert rates and drift (for meadow, the site with history) as
ops, the rest as an admin. Rerun it after a change to the pages' look.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bearwatch.schema import Role
from bench.demo_park import DEFAULT_DATA_DIR, PASSWORD, add_role_users, database_url, free_port, running_demo

OUT = Path(__file__).resolve().parent.parent / "docs" / "screenshots"
USERS = {Role.RANGER: "ranger", Role.OPS: "ops", Role.ADMIN: "admin"}
HISTORY_SITE = "meadow"  # bearwatch.demo.run.HISTORY_SITE
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]
SHOTS = ("alert-rates", "cameras", "drift", "latest-frames", "live-wall", "login", "models", "review", "rollout", "users")


def _login(page: object, name: str) -> None:
    page.get_by_label("User name").fill(name)  # type: ignore[attr-defined]
    page.get_by_role("textbox", name="Password").fill(PASSWORD)  # type: ignore[attr-defined]
    page.get_by_role("button", name="Log in").click()  # type: ignore[attr-defined]
    page.locator(".bw-tile").first.wait_for()  # type: ignore[attr-defined]


def _logout(page: object) -> None:
    page.get_by_role("button", name="Log out").click()  # type: ignore[attr-defined]
    page.get_by_label("User name").wait_for()  # type: ignore[attr-defined]


def _open(page: object, link: str) -> None:
    page.get_by_role("link", name=link, exact=True).click()  # type: ignore[attr-defined]
    page.get_by_role("heading", name=link).wait_for()  # type: ignore[attr-defined]


def _pick(page: object, key: str, option: str) -> None:
    page.locator(f".st-key-{key}").click()  # type: ignore[attr-defined]
    page.get_by_role("option", name=option, exact=True).click()  # type: ignore[attr-defined]
    page.evaluate("document.activeElement && document.activeElement.blur()")  # type: ignore[attr-defined]


def _images_loaded(page: object) -> None:
    page.wait_for_function(  # type: ignore[attr-defined]
        "() => [...document.querySelectorAll('[data-stale=\"false\"] img')].every(i => i.complete && i.naturalWidth > 0)")


def _settle(page: object, ms: int = 1200) -> None:
    """Tables and charts draw on a canvas after their element appears: give them a moment."""
    page.wait_for_timeout(ms)  # type: ignore[attr-defined]


def take(url: str, out: Path) -> None:
    from playwright.sync_api import sync_playwright

    fresh = '[data-testid=stElementContainer][data-stale="false"]'
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 860})
        page.set_default_timeout(120_000)
        page.goto(url)
        page.get_by_label("User name").wait_for()
        page.screenshot(path=str(out / "login.png"))

        _login(page, USERS[Role.RANGER])
        page.locator(f"{fresh} .bw-tile img").first.wait_for()
        _images_loaded(page)
        _settle(page, 500)
        page.screenshot(path=str(out / "live-wall.png"))
        _open(page, "Review")
        page.locator(fresh).locator("text=/in the queue|Nothing to review/").first.wait_for()
        _images_loaded(page)
        _settle(page)
        page.screenshot(path=str(out / "review.png"))
        _logout(page)

        _login(page, USERS[Role.OPS])
        for link, key, shot in (("Alert rates", "rates_site", "alert-rates"), ("Drift", "drift_site", "drift")):
            _open(page, link)
            _pick(page, key, HISTORY_SITE)
            page.get_by_text(f"{HISTORY_SITE} is ").first.wait_for()
            page.locator(f"{fresh} [data-testid='stVegaLiteChart']").first.wait_for()
            _settle(page, 2000)
            page.screenshot(path=str(out / f"{shot}.png"), full_page=True)
        _logout(page)

        _login(page, USERS[Role.ADMIN])
        for link, shot in (("Latest frames", "latest-frames"), ("Cameras", "cameras"), ("Rollout", "rollout"),
                           ("Models", "models"), ("Users", "users")):
            _open(page, link)
            if link == "Latest frames":
                page.locator(f"{fresh} .bw-tile img").first.wait_for()
                _images_loaded(page)
            else:
                page.locator(f"{fresh} [data-testid=stDataFrame]").first.wait_for()
            if link == "Rollout":
                _pick(page, "rollout_site", "north")
                page.get_by_role("heading", name="north: ").wait_for()
                page.locator(fresh).locator("text=/Gate .* → /").first.wait_for()
            _settle(page)
            page.screenshot(path=str(out / f"{shot}.png"))
        browser.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR, help="the demo's data dir (built if new)")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with running_demo(args.data_dir, dashboard_port=free_port()) as demo:
        assert demo.dashboard_url is not None
        add_role_users(database_url(demo.env), USERS)
        take(demo.dashboard_url, args.out)
    for shot in SHOTS:
        size = (args.out / f"{shot}.png").stat().st_size
        print(f"{args.out / shot}.png: {size // 1024} KiB")


if __name__ == "__main__":
    main()
