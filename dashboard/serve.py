"""`python -m dashboard.serve run dashboard/server_app.py ...`: Streamlit's own command
line (which serves the ``st.App`` in server_app.py), started after this process serves
its /metrics (when BEARWATCH_DASHBOARD_METRICS_PORT is set) and has the session cookie's
signing key. Streamlit runs the page script only when a browser connects: metrics started
from the script left the dashboard's scrape target down until someone opened a page, and
a key file that cannot be made should stop the start, not the first login."""

from __future__ import annotations

import gc
import importlib
import pkgutil
import threading

from bearwatch.settings import load_settings
from dashboard.metrics import serve_dashboard_metrics
from dashboard.session_cookie import signing_key

# What the pages import on their first open besides Streamlit: SciPy (through shadow.gates
# and shadow.stats), pandas, Altair and pyarrow (tables). Seconds on a busy 2-core machine,
# which a page's first open paid (issue 16: Rollout took 8.9 s on the demo).
PRELOAD = ("pandas", "pyarrow", "altair")


def preload() -> None:
    """Import the pages' heavy modules and every dashboard query module, in the background
    while the server starts and the user logs in, so that no page's first open waits for them.
    Then freeze what is loaded out of the garbage collector's sight: Streamlit runs a full
    collection after every script run (runner.postScriptGC), which walked these ~230,000
    module-level objects each time (0.16 s of CPU a run, twice between the login click and
    the first page). Garbage made later is collected as before."""
    import dashboard.queries

    names = [*PRELOAD, *(f"dashboard.queries.{m.name}" for m in pkgutil.iter_modules(dashboard.queries.__path__))]
    for name in names:
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001 -- only a warm-up: the page that imports it shows the error
            pass
    gc.collect()  # what the imports left as garbage goes now, not into the frozen generation
    gc.freeze()


def main() -> None:
    from streamlit.web.cli import main as streamlit_main

    settings = load_settings()
    signing_key(settings)
    serve_dashboard_metrics(settings)
    threading.Thread(target=preload, name="preload", daemon=True).start()
    streamlit_main(prog_name="streamlit")


if __name__ == "__main__":
    main()
