"""Alembic environment: one history for SQLite (batch mode) and PostgreSQL."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context

from bearwatch.db import make_engine
from bearwatch.schema import Base

config = context.config
target_metadata = Base.metadata


def _url() -> str:
    url = config.attributes.get("database_url") or config.get_main_option("sqlalchemy.url")
    if not url:
        # Plain `alembic` on the command line: the same settings as the bearwatch CLI.
        from bearwatch.settings import load_settings

        url = load_settings().database_url
    return url


def _configure(connection_or_url: str | sa.Connection) -> None:
    is_sqlite = (
        str(connection_or_url).startswith("sqlite")
        if isinstance(connection_or_url, str)
        else connection_or_url.dialect.name == "sqlite"
    )
    kwargs = dict(target_metadata=target_metadata, render_as_batch=is_sqlite, compare_type=True)
    if isinstance(connection_or_url, str):
        context.configure(url=connection_or_url, literal_binds=True, **kwargs)
    else:
        context.configure(connection=connection_or_url, **kwargs)


def run_migrations_offline() -> None:
    _configure(_url())
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    given = config.attributes.get("connection")  # from bearwatch init or pytest-alembic
    if isinstance(given, sa.Connection):
        _migrate(given)
        return
    engine = given if isinstance(given, sa.Engine) else make_engine(_url())
    try:
        with engine.connect() as conn:
            _migrate(conn)
    finally:
        if given is None:
            engine.dispose()


def _migrate(connection: sa.Connection) -> None:
    _configure(connection)
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
