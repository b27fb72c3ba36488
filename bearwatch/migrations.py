"""Running Alembic from bearwatch, and refusing a database that is not at head."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from bearwatch.db import check_reachable
from bearwatch.errors import BearwatchError, DatabaseNotReady


def script_location() -> Path:
    """The migration scripts: bearwatch/_migrations in an installed wheel (pyproject.toml
    ships the repo's alembic/ folder there), else a checkout's alembic/ folder, which an
    editable install leaves in place."""
    shipped = Path(str(resources.files("bearwatch") / "_migrations"))
    if (shipped / "env.py").is_file():
        return shipped
    # alembic.ini marks a checkout: in site-packages, ../alembic is the alembic library.
    root = Path(__file__).resolve().parent.parent
    if (root / "alembic.ini").is_file() and (root / "alembic" / "env.py").is_file():
        return root / "alembic"
    raise BearwatchError(f"bearwatch's migration scripts are missing (looked in {shipped}); reinstall bearwatch")


def alembic_config(database_url: str | None = None) -> Config:
    # Built here, not read from alembic.ini: an installed bearwatch has no alembic.ini.
    # (The repo's alembic.ini is for developers running `alembic` by hand.)
    cfg = Config()
    cfg.set_main_option("script_location", str(script_location()).replace("%", "%%"))
    if database_url:
        cfg.attributes["database_url"] = database_url
    return cfg


def head_revision() -> str:
    heads = ScriptDirectory.from_config(alembic_config()).get_heads()
    if len(heads) != 1:
        raise DatabaseNotReady(f"the migration history has {len(heads)} heads; expected one")
    return heads[0]


def current_revision(engine: sa.Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade_to_head(engine: sa.Engine) -> None:
    check_reachable(engine)
    cfg = alembic_config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


def require_head(engine: sa.Engine) -> None:
    """Every command that touches the database calls this first."""
    check_reachable(engine)
    current, head = current_revision(engine), head_revision()
    if current == head:
        return
    where = engine.url.render_as_string(hide_password=True)
    if current is None:
        raise DatabaseNotReady(
            f"the database at {where} has no bearwatch schema; run `bearwatch init` to create it"
        )
    raise DatabaseNotReady(
        f"the database at {where} is at schema revision {current}, but this bearwatch needs "
        f"{head}; run `bearwatch init` to upgrade it (back it up first)"
    )
