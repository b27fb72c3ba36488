"""Starting the Streamlit dashboard as a child process of the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from bearwatch.settings import Settings


def dashboard_script() -> Path:
    import dashboard

    return Path(dashboard.__file__).resolve().parent / "app.py"


def serve_dashboard(settings: Settings) -> subprocess.Popen[bytes]:
    """Start ``streamlit run`` on the dashboard with this process's settings."""
    env = {
        **os.environ,
        "BEARWATCH_DATABASE_URL": settings.database_url,
        "BEARWATCH_DATA_DIR": str(settings.data_dir.resolve()),
    }
    return subprocess.Popen(
        [
            sys.executable, "-m", "streamlit", "run", str(dashboard_script()),
            "--server.headless", "true",
            "--server.address", settings.dashboard_address,
            "--server.port", str(settings.dashboard_port),
            "--browser.gatherUsageStats", "false",
            "--server.fileWatcherType", "none",
            "--client.toolbarMode", "minimal",
        ],
        env=env,
    )


def dashboard_url(settings: Settings) -> str:
    return f"http://{settings.dashboard_address}:{settings.dashboard_port}/"
