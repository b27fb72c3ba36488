"""Dashboard pages in a real browser on a large database: load time and server memory.

    .venv/bin/python bench/dashboard.py --frames 1000000 --keep /tmp/bw-1m.db
    .venv/bin/python bench/dashboard_pages.py --database-url sqlite:////tmp/bw-1m.db [--rounds 5]

Starts `bearwatch dashboard` on the database, logs in with Debian's chromium
(Playwright) as an admin it adds (`bench-admin`), opens every page `rounds` times through
the sidebar and prints, per page, the median time from the click until the page's
content is on screen, and the Streamlit server's resident memory (VmRSS, and its peak
VmHWM) after each round. The bench database has no frame files, so the live wall shows
"frame file missing" tiles: this measures queries, rendering and memory, not JPEG work.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bearwatch.db import make_engine, session_factory
from bearwatch.schema import Role, User
from bearwatch.users import add_user, set_password

PASSWORD = "bench password 1"
# (sidebar link, what shows that the page has rendered: looked for in element containers
# of the new run only, since Streamlit keeps the previous page's elements, marked stale,
# until they are replaced)
PAGES = [("Live wall", ".bw-tile"), ("Latest frames", "text=newest scored frames"),
         ("Cameras", "[data-testid=stDataFrame]"), ("Models", "[data-testid=stDataFrame]"),
         ("Users", "[data-testid=stDataFrame]"),
         ("Review", "text=/in the queue|Nothing to review/"), ("Rollout", "text=/Gate .* → |Expanded is the last stage/"),
         ("Alert rates", "[data-testid=stVegaLiteChart]"), ("Drift", "[data-testid=stVegaLiteChart]")]
FRESH = '[data-testid=stElementContainer][data-stale="false"]'

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]


def _memory_mb(pid: int) -> tuple[float, float]:
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def _streamlit_pid(parent: int) -> int:
    children = Path(f"/proc/{parent}/task/{parent}/children").read_text().split()
    return int(children[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    engine = make_engine(args.database_url)
    with session_factory(engine).begin() as session:
        if session.query(User).filter(User.name == "bench-admin").first() is None:
            add_user(session, "bench-admin", Role.ADMIN, PASSWORD)
        else:
            set_password(session, "bench-admin", PASSWORD)
    engine.dispose()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as data_dir:
        env = {**os.environ, "BEARWATCH_DATABASE_URL": args.database_url, "BEARWATCH_DATA_DIR": data_dir,
               "BEARWATCH_DASHBOARD_PORT": str(port)}
        proc = subprocess.Popen([sys.executable, "-m", "bearwatch", "dashboard"], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline:
                try:
                    urllib.request.urlopen(f"{url}/_stcore/health", timeout=2)
                    break
                except OSError:
                    time.sleep(0.3)
            server = _streamlit_pid(proc.pid)
            print(f"server RSS after start: {_memory_mb(server)[0]:.0f} MB")
            loads: dict[str, list[float]] = {page: [] for page, _ in PAGES}
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
                page = browser.new_page(viewport={"width": 1280, "height": 860})
                page.set_default_timeout(60_000)
                page.goto(url)
                page.get_by_label("User name").fill("bench-admin")
                page.get_by_role("textbox", name="Password").fill(PASSWORD)
                page.get_by_role("button", name="Log in").click()
                page.locator(".bw-tile").first.wait_for()
                print("| round | server RSS MB | peak RSS MB |\n|---:|---:|---:|")
                for r in range(args.rounds):
                    for name, ready in PAGES:
                        # Leave the page first so the click really loads it again.
                        other = "Models" if name != "Models" else "Users"
                        page.get_by_role("link", name=other).click()
                        page.get_by_role("heading", name=other).wait_for()
                        t0 = time.perf_counter()
                        page.get_by_role("link", name=name).click()
                        page.get_by_role("heading", name=name).wait_for()
                        page.locator(FRESH).locator(ready).first.wait_for()
                        loads[name].append(time.perf_counter() - t0)
                    rss, peak = _memory_mb(server)
                    print(f"| {r + 1} | {rss:.0f} | {peak:.0f} |")
                browser.close()
            print("\n| page | median load s (click to content) | max s |\n|---|---:|---:|")
            for name, times in loads.items():
                print(f"| {name} | {statistics.median(times):.2f} | {max(times):.2f} |")
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)


if __name__ == "__main__":
    main()
