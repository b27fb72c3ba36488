"""The dashboard process's Prometheus metrics (a module, not the page script: Streamlit
re-runs the script on every interaction, and a metric must be registered once)."""

from __future__ import annotations

import threading

from prometheus_client import Histogram

from bearwatch.metrics import serve
from bearwatch.settings import Settings

PAGE_SECONDS = Histogram(
    "bearwatch_dashboard_page_seconds", "Time to run one dashboard page script, by page", ["page"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 1.5, 2.5, 5.0, 10.0),
)

_lock = threading.Lock()
_served: list[int] = []


def serve_dashboard_metrics(settings: Settings) -> int | None:
    """Serve this process's /metrics on BEARWATCH_DASHBOARD_METRICS_PORT (at
    BEARWATCH_METRICS_ADDRESS) once per process; None when no port is configured.
    dashboard.serve calls it before Streamlit starts, so Prometheus finds the dashboard
    before anyone has opened a page; the page script calls it too (a plain `streamlit run`)."""
    port = settings.dashboard_metrics_port
    with _lock:
        if port is not None and not _served:
            serve("dashboard", port, settings.metrics_address)
            _served.append(port)
    return port
