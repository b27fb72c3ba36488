"""The dashboard server loads what the pages import (SciPy through shadow.gates, pandas,
Altair) while it starts, before anyone opens a page: a page's first open no longer pays
seconds of imports on a busy machine (issue 16: Rollout took 8.9 s on the demo)."""

from __future__ import annotations

import os
from pathlib import Path

from bearwatch.dashboard_server import serve_dashboard, stop_dashboard
from bearwatch.settings import load_settings
from tests.conftest import wait_for
from tests.ingest.helpers import free_port


def _mapped(pid: int, part: str) -> bool:
    """Whether the process has a shared library under ``part`` mapped (it imported it)."""
    return part in Path(f"/proc/{pid}/maps").read_text()


def test_server_imports_the_pages_heavy_modules_before_any_page_opens(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path, database_url=f"sqlite:///{tmp_path / 'bw.db'}",
                             dashboard_address="127.0.0.1", dashboard_port=free_port())
    proc = serve_dashboard(settings)
    try:
        # No browser connects, so no page script runs: only the server can have loaded these.
        parts = [f"{os.sep}scipy{os.sep}stats{os.sep}", f"{os.sep}pandas{os.sep}_libs{os.sep}", f"{os.sep}pyarrow{os.sep}"]
        for part in parts:
            wait_for(f"the server to load {part}", lambda part=part: _mapped(proc.pid, part), timeout=120.0, interval=0.5)
        assert proc.poll() is None
    finally:
        stop_dashboard(proc)
