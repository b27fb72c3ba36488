"""What every bearwatch process exports whatever it does: ``bearwatch_process_info{part}``,
always 1 while the process serves /metrics. The alert rules watch it with ``absent()``: a
dead process's own metrics vanish with it, this series too (deploy/prometheus)."""

from __future__ import annotations

from wsgiref.simple_server import WSGIServer

from prometheus_client import Gauge, start_http_server

PARTS = ("ingest", "inference", "shadow", "dashboard")
PROCESS_INFO = Gauge(
    "bearwatch_process_info", "1 while this bearwatch process runs, by part (ingest, inference, shadow, dashboard)", ["part"]
)


def serve(part: str, port: int, address: str) -> WSGIServer:
    """Serve this process's /metrics on ``address``:``port`` (a daemon thread) and say
    which part it is. Returns the server (tests shut it down)."""
    server, _thread = start_http_server(port, addr=address)
    PROCESS_INFO.labels(part).set(1)
    return server
