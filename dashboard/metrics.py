"""The dashboard process's Prometheus metrics (a module, not the page script: Streamlit
re-runs the script on every interaction, and a metric must be registered once)."""

from prometheus_client import Histogram

PAGE_SECONDS = Histogram(
    "bearwatch_dashboard_page_seconds", "Time to run one dashboard page script, by page", ["page"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 1.5, 2.5, 5.0, 10.0),
)
