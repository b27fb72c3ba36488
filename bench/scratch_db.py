"""A scratch PostgreSQL database for a bench: created on the server of an admin URL, dropped
at the end (WITH (FORCE): connections still open are ended) unless kept."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import psycopg
from sqlalchemy.engine import make_url


@dataclass(frozen=True)
class ScratchDatabase:
    name: str
    url: str  # for SQLAlchemy (bearwatch.db.make_engine)
    conninfo: str  # for psycopg


@contextmanager
def scratch_database(admin_url: str, prefix: str, *, keep: bool = False) -> Iterator[ScratchDatabase]:
    admin = make_url(admin_url)
    admin_conninfo = admin.set(drivername="postgresql").render_as_string(hide_password=False)
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    database = ScratchDatabase(name, admin.set(database=name).render_as_string(hide_password=False),
                               admin.set(drivername="postgresql", database=name).render_as_string(hide_password=False))
    with psycopg.connect(admin_conninfo, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield database
    finally:
        if not keep:
            with psycopg.connect(admin_conninfo, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
