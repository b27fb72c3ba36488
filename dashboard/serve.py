"""`python -m dashboard.serve run dashboard/app.py ...`: Streamlit's own command line,
started after this process serves its /metrics (when BEARWATCH_DASHBOARD_METRICS_PORT is
set). Streamlit runs the page script only when a browser connects: metrics started from
the script left the dashboard's scrape target down until someone opened a page."""

from __future__ import annotations

from bearwatch.settings import load_settings
from dashboard.metrics import serve_dashboard_metrics


def main() -> None:
    from streamlit.web.cli import main as streamlit_main

    serve_dashboard_metrics(load_settings())
    streamlit_main(prog_name="streamlit")


if __name__ == "__main__":
    main()
