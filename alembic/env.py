"""Alembic environment: one history for SQLite (batch mode) and PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from alembic import context

from bearwatch.db import make_engine
from bearwatch.partitions import has_layout, layout_object
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
    kwargs: dict[str, Any] = dict(target_metadata=target_metadata, render_as_batch=is_sqlite, compare_type=True)
    if isinstance(connection_or_url, str):
        context.configure(url=connection_or_url, literal_binds=True, **kwargs)
    else:
        if connection_or_url.dialect.name == "postgresql":
            kwargs["include_object"] = _compared_on(connection_or_url)
        context.configure(connection=connection_or_url, **kwargs)


def _compared_on(connection: sa.Connection) -> Callable[..., bool]:
    """What autogenerate (and pytest-alembic) compares with bearwatch.schema: everything
    but the partitioned layout's own objects (migration 0022, bearwatch.partitions), where
    the database has it. Asked at the first comparison, not here: a query now would open
    a transaction around the migrations."""
    partitioned: list[bool] = []

    def compared(obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
        if not partitioned:
            partitioned.append(has_layout(connection))
        if not partitioned[0]:
            return True
        table = getattr(getattr(obj, "table", None), "name", None)
        referred = getattr(getattr(obj, "referred_table", None), "name", None) if type_ == "foreign_key_constraint" else None
        return not layout_object(type_, name, table, referred)

    return compared


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
