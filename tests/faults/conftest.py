"""A private PostgreSQL server per test (initdb + pg_ctl on a free port), so a fault test
can stop and restart *its* server without touching the shared one on 127.0.0.1:5432
that other test runs use. Outside CI the tests that need it are skipped when the
PostgreSQL server binaries are missing; under CI=true they fail instead."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.ingest.helpers import free_port

PG_BIN = Path(os.environ.get("BEARWATCH_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))


class PrivatePostgres:
    """One PostgreSQL cluster in a temporary directory, listening on 127.0.0.1:``port``
    (trust auth, unix socket in the directory). initdb refuses to run as root, so as
    root the server runs as the ``postgres`` OS user."""

    def __init__(self, root: Path, port: int) -> None:
        self.root, self.port = root, port
        self.data = root / "data"
        self._as_user: list[str] = []
        if os.geteuid() == 0:
            shutil.chown(root, "postgres", "postgres")
            self._as_user = ["runuser", "-u", "postgres", "--"]

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/bearwatch"

    def _run(self, *args: str) -> None:
        done = subprocess.run([*self._as_user, *args], check=False, capture_output=True, text=True, timeout=60)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(args[:2])} failed: {done.stdout[-1500:]}{done.stderr[-1500:]}")

    def init(self) -> None:
        self._run(str(PG_BIN / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8",
                  "--no-sync")
        self.start()
        self._run(str(PG_BIN / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "bearwatch")

    def start(self) -> None:
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.root} -c fsync=off"
        self._run(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.root / "server.log"), "-o", options,
                  "-w", "-t", "30", "start")

    def stop(self) -> None:
        """A fast shutdown: every client connection is terminated, as in a real restart."""
        self._run(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "-t", "30", "stop")

    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()


@pytest.fixture
def private_pg() -> Iterator[PrivatePostgres]:
    missing = [name for name in ("initdb", "pg_ctl", "createdb") if not (PG_BIN / name).exists()]
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        missing.append("runuser")
    if missing:
        reason = f"a private PostgreSQL server needs {', '.join(missing)} in {PG_BIN} (apt-get install postgresql)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason} (CI=true: fault tests must run, not skip)")
        pytest.skip(reason)
    root = Path(tempfile.mkdtemp(prefix="bearwatch-pg-"))
    server = PrivatePostgres(root, free_port())
    try:
        server.init()
        yield server
    finally:
        if server.running():
            try:
                server.stop()
            except RuntimeError:
                pass
        shutil.rmtree(root, ignore_errors=True)
