"""`python -m dashboard.serve run dashboard/server_app.py ...`: Streamlit's own command
line (which serves the ``st.App`` in server_app.py), started after this process serves
its /metrics (when BEARWATCH_DASHBOARD_METRICS_PORT is set) and has the session cookie's
signing key. Streamlit runs the page script only when a browser connects: metrics started
from the script left the dashboard's scrape target down until someone opened a page, and
a key file that cannot be made should stop the start, not the first login."""

from __future__ import annotations

from bearwatch.settings import load_settings
from dashboard.metrics import serve_dashboard_metrics
from dashboard.session_cookie import signing_key


def main() -> None:
    from streamlit.web.cli import main as streamlit_main

    settings = load_settings()
    signing_key(settings)
    serve_dashboard_metrics(settings)
    streamlit_main(prog_name="streamlit")


if __name__ == "__main__":
    main()
