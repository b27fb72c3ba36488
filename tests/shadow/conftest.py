"""Fixtures shared by the shadow tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy.orm import Session, sessionmaker

from bearwatch.db import make_engine, session_factory
from shadow import drift_windows
from tests.conftest import run_cli


@pytest.fixture
def cli_db(data_env: dict[str, str]) -> Iterator[sessionmaker[Session]]:
    """A database made by `bearwatch init` (as the CLI and the shadow loop see it)."""
    assert run_cli("init", env=data_env).returncode == 0
    engine = make_engine(data_env["BEARWATCH_DATABASE_URL"])
    yield session_factory(engine)
    engine.dispose()


@pytest.fixture
def new_drift_process() -> Iterator[None]:
    """Each test as a new process: nothing drift read is in memory before or after it."""
    drift_windows.clear_cache()
    yield
    drift_windows.clear_cache()
