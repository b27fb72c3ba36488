"""Dashboard pages in a real browser on the demo: first and warm open per role, server CPU and memory.

    .venv/bin/python bench/dashboard_pages.py [--rounds 5] [--roles ranger,ops,admin] [--pages "Live wall,Review"]
    .venv/bin/python bench/dashboard_pages.py --rounds 0 --pages "Live wall" --roles ranger,admin,ranger,admin   # the login only
    .venv/bin/python bench/dashboard_pages.py --as-is --database-url sqlite:////tmp/bw-1m.db   # any database

By default it runs `bearwatch demo` (bench/demo_park.py: the demo's park, footage, model and
meadow's three weeks of history, in bearwatch-data/bench-demo/, built once and reused) and
measures while the demo runs, as a user of the demo would see it. For each role (bench-ranger,
bench-ops, bench-admin, added to the demo's users) it starts a fresh `bearwatch dashboard`
(cold: new process, empty Streamlit caches, page modules not yet imported), logs in with
Debian's chromium (Playwright) and opens every page of that role once through the sidebar:
the FIRST open (the Live wall's is from the login click). Then it opens them all again
`rounds` times: the WARM opens (median and maximum). A page's time runs from the click until
its content is on screen; "server CPU" is the Streamlit process's user+system CPU seconds over
the same span. It prints the server's resident memory (VmRSS, peak VmHWM) after the first
opens and after the rounds, and the machine's load average.

--pages limits the pages opened to those named (the first page, where the login lands, is
always measured); a role named twice in --roles gets a fresh server and login each time, and
the end of the output lists every first open of the page after the login, per role.

With --as-is it benches the database given as it is (no demo; a temporary data dir, so the
live wall shows "frame file missing" tiles there).
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bearwatch.auth import Actor
from bearwatch.schema import Role
from bench.demo_park import (
    DEFAULT_DATA_DIR,
    PASSWORD,
    ROLE_USERS,
    add_role_users,
    database_url,
    free_port,
    running_demo,
    wait_healthy,
)
from dashboard.app import visible_pages

# What shows that a page has rendered: looked for in element containers of the new run only,
# since Streamlit keeps the previous page's elements, marked stale, until they are replaced.
READY = {
    "Live wall": ".bw-tile", "Latest frames": "text=newest scored frames",
    "Cameras": "[data-testid=stDataFrame]", "Models": "[data-testid=stDataFrame]",
    "Users": "[data-testid=stDataFrame]", "Review": "text=/in the queue|Nothing to review|[Nn]othing (left )?to review/",
    "Rollout": "text=/Gate .* → |Expanded is the last stage/",
    "Alert rates": "[data-testid=stVegaLiteChart]", "Drift": "[data-testid=stVegaLiteChart]",
}
FRESH = '[data-testid=stElementContainer][data-stale="false"]'
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]
TICKS = os.sysconf("SC_CLK_TCK")


def _memory_mb(pid: int) -> tuple[float, float]:
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def _cpu_s(pid: int) -> float:
    stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(stat[11]) + int(stat[12])) / TICKS  # utime, stime


def _streamlit_pid(parent: int) -> int:
    children = Path(f"/proc/{parent}/task/{parent}/children").read_text().split()
    return int(children[0])


def _load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


@dataclass
class PageTimes:
    first: float = 0.0
    first_cpu: float = 0.0
    warm: list[float] = field(default_factory=list)
    warm_cpu: list[float] = field(default_factory=list)


@contextmanager
def _dashboard(env: dict[str, str]) -> Iterator[tuple[str, int]]:
    """A fresh `bearwatch dashboard` on a free port: (its URL, the Streamlit server's pid)."""
    port = free_port()
    full_env = {**os.environ, **env, "BEARWATCH_DASHBOARD_PORT": str(port), "BEARWATCH_DASHBOARD_ADDRESS": "127.0.0.1",
                "BEARWATCH_DASHBOARD_METRICS_PORT": str(free_port())}
    proc = subprocess.Popen([sys.executable, "-m", "bearwatch", "dashboard"], env=full_env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, proc, time.monotonic() + 120, "the dashboard did not start")
        yield url, _streamlit_pid(proc.pid)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _open(page: object, server: int, title: str, times: PageTimes, first: bool, login: bool = False) -> None:
    cpu0, t0 = _cpu_s(server), time.perf_counter()
    if login:
        page.get_by_role("button", name="Log in").click()  # type: ignore[attr-defined]
    else:
        page.get_by_role("link", name=title, exact=True).click()  # type: ignore[attr-defined]
    page.get_by_role("heading", name=title).wait_for()  # type: ignore[attr-defined]
    if title in READY:  # a page new to this bench counts as open when its heading is
        page.locator(FRESH).locator(READY[title]).first.wait_for()  # type: ignore[attr-defined]
    elapsed, cpu = time.perf_counter() - t0, _cpu_s(server) - cpu0
    if first:
        times.first, times.first_cpu = elapsed, cpu
    else:
        times.warm.append(elapsed)
        times.warm_cpu.append(cpu)


def bench_role(role: Role, env: dict[str, str], rounds: int, pages: set[str] | None = None) -> tuple[float, float]:
    """Bench one role on a fresh server; the first open of the page after the login (s, server CPU s)."""
    from playwright.sync_api import sync_playwright

    titles = [spec.title for spec in visible_pages(Actor(ROLE_USERS[role], role))]
    titles = [t for i, t in enumerate(titles) if i == 0 or pages is None or t in pages]
    times = {title: PageTimes() for title in titles}
    with _dashboard(env) as (url, server), sync_playwright() as pw:
        start_rss = _memory_mb(server)[0]
        browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 860})
        page.set_default_timeout(120_000)
        page.goto(url)
        page.get_by_label("User name").fill(ROLE_USERS[role])
        page.get_by_role("textbox", name="Password").fill(PASSWORD)
        _open(page, server, titles[0], times[titles[0]], first=True, login=True)
        for title in titles[1:]:
            _open(page, server, title, times[title], first=True)
        first_rss, first_peak = _memory_mb(server)
        for _ in range(rounds):
            for title in titles:
                if title == titles[0]:  # leave it first, so that the click really loads it again
                    _open(page, server, titles[-1], PageTimes(), first=True)
                _open(page, server, title, times[title], first=False)
        rss, peak = _memory_mb(server)
        browser.close()
    print(f"\n### {role.value} ({ROLE_USERS[role]}), load average {_load()}\n")
    print(f"server RSS: {start_rss:.0f} MB started, {first_rss:.0f} MB after the first opens (peak {first_peak:.0f}), "
          f"{rss:.0f} MB after {rounds} rounds (peak {peak:.0f})\n")
    print("| page | first open s | server CPU s | warm median s | warm max s | warm server CPU s (median) |")
    print("|---|---:|---:|---:|---:|---:|")
    for title, t in times.items():
        median = f"{statistics.median(t.warm):.2f}" if t.warm else "—"
        most = f"{max(t.warm):.2f}" if t.warm else "—"
        cpu = f"{statistics.median(t.warm_cpu):.2f}" if t.warm_cpu else "—"
        print(f"| {title}{'' if title in READY else ' (heading only)'} | {t.first:.2f} | {t.first_cpu:.2f} | {median} | {most} | {cpu} |")
    sys.stdout.flush()
    return times[titles[0]].first, times[titles[0]].first_cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR, help="the demo's data dir (built if new)")
    parser.add_argument("--database-url", help="the demo's database (default: SQLite in the data dir)")
    parser.add_argument("--as-is", action="store_true", help="bench --database-url as it is: no demo")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--roles", default="ranger,ops,admin")
    parser.add_argument("--pages", help="comma-separated page titles to open (default: all of the role's)")
    args = parser.parse_args()
    roles = [Role(r.strip()) for r in args.roles.split(",")]
    pages = {p.strip() for p in args.pages.split(",")} if args.pages else None
    after_login: dict[Role, list[tuple[float, float]]] = {}
    print(f"machine: {os.cpu_count()} CPUs, load average {_load()} at the start")
    with ExitStack() as stack:
        if args.as_is:
            if not args.database_url:
                parser.error("--as-is needs --database-url")
            data_dir = stack.enter_context(tempfile.TemporaryDirectory())
            env = {"BEARWATCH_DATABASE_URL": args.database_url, "BEARWATCH_DATA_DIR": data_dir}
        else:
            demo = stack.enter_context(running_demo(args.data_dir, database_url_=args.database_url))
            env = demo.env
        add_role_users(database_url(env))
        for role in roles:
            after_login.setdefault(role, []).append(bench_role(role, env, args.rounds, pages))
    print(f"\nload average at the end: {_load()}")
    for role, opens in after_login.items():
        listed = ", ".join(f"{s:.2f} ({cpu:.2f})" for s, cpu in opens)
        print(f"page after the login, {role.value}: first open s (server CPU s): {listed}; "
              f"median {statistics.median(s for s, _ in opens):.2f} s")


if __name__ == "__main__":
    main()
